"""Stand-in Dukascopy server for local runs and resilience tests (see :mod:`.server`)."""

from tickpipe_dev.standin.server import Faults, Missing, StandinServer, Stats, start_standin

__all__ = ["Faults", "Missing", "StandinServer", "Stats", "start_standin"]
