"""Instruments: canonical names, source codes and price scales, from the sources' metadata."""

from tickpipe_shared.instruments.registry import (
    Instrument,
    InstrumentRegistry,
    UnknownInstrumentError,
    canonical_name,
)

__all__ = ["Instrument", "InstrumentRegistry", "UnknownInstrumentError", "canonical_name"]
