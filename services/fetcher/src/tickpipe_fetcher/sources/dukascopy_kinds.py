"""What a unit kind means for both Dukascopy sources: ticks, or BID/ASK candles of 1m, 1h, 1d.

Spec: ``../shared/docs/dukascopy.md`` §2.1 (files) and §3.1 (JSON endpoints). Each candle
timeframe is one file or endpoint per unit: minute candles per UTC day, hour candles per UTC
month, day candles per UTC year (:func:`tickpipe_shared.units.unit_span`).
"""

from __future__ import annotations

from dataclasses import dataclass

from tickpipe_shared.kinds import Kind, KindError

from tickpipe_fetcher.http import PermanentFetchError

#: Candle timeframe → (legacy file suffix, JSON API period name).
CANDLE_PERIODS = {"1m": ("min_1", "minute"), "1h": ("hour_1", "hour"), "1d": ("day_1", "day")}


@dataclass(frozen=True, slots=True)
class DukascopyKind:
    """A unit kind as the Dukascopy URLs spell it: ``candles`` False for ticks; else the
    ``timeframe`` (``1m``, ``1h``, ``1d``) and the upper-case ``side`` (``BID``, ``ASK``)."""

    candles: bool
    timeframe: str = ""
    side: str = ""

    @property
    def file_suffix(self) -> str:
        """``min_1``, ``hour_1`` or ``day_1`` (legacy candle file names)."""
        return CANDLE_PERIODS[self.timeframe][0]

    @property
    def period(self) -> str:
        """``minute``, ``hour`` or ``day`` (JSON API candle paths)."""
        return CANDLE_PERIODS[self.timeframe][1]


def dukascopy_kind(kind: str) -> DukascopyKind:
    """Parse ``kind``; raises :class:`PermanentFetchError` for a kind Dukascopy does not serve."""
    try:
        k = Kind.parse(kind)
    except KindError as e:
        raise PermanentFetchError(f"kind {kind!r}: {e}") from None
    if not k.is_candles:
        return DukascopyKind(False)
    tf = str(k.timeframe)
    if tf not in CANDLE_PERIODS or k.side not in ("bid", "ask"):
        raise PermanentFetchError(
            f"kind {kind!r}: Dukascopy serves bid and ask candles of 1m, 1h and 1d only"
        )
    return DukascopyKind(True, tf, str(k.side).upper())
