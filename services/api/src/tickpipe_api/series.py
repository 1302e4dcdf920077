"""What a ticks or candles query asks for, resolved: the :class:`Series` every query, cache key
and serializer works from.

Three series kinds:

* ``ticks`` — table ``ticks``;
* ``candles`` — OHLCV computed from ticks: the ``ohlcv_<tf>`` continuous aggregate (TimescaleDB)
  when one exists for the timeframe, otherwise ``date_bin`` buckets (PostgreSQL's
  ``time_bucket``, same origin 2000-01-03) over the largest aggregate the timeframe is a multiple
  of (TimescaleDB) or over ``ticks`` (plain PostgreSQL, whose views would scan every tick);
* ``source_candles`` — table ``candles``, the sources' own bars.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from tickpipe_shared.db.ohlcv import (
    BUCKET_ORIGIN,
    TIMEFRAMES,
    parse_timeframe,
    rollup_base,
    view_name,
)
from tickpipe_shared.kinds import TICKS, Kind

SeriesKind = Literal["ticks", "candles", "source_candles"]
PriceFormat = Literal["decimal", "float"]

#: Origin of every bucket (TimescaleDB's time_bucket origin; a Monday, so weeks start Mondays).
ORIGIN = datetime.fromisoformat(BUCKET_ORIGIN)


@dataclass(frozen=True, slots=True)
class Series:
    """A resolved query: ``instrument`` as stored, ``[start, end)`` UTC, the instrument's
    ``scale`` (decimals of its prices), and for candles the ``timeframe`` (canonical spelling)
    and ``side`` (computed candles: ``bid``/``ask``/``mid``; source candles: the stored side).
    ``width`` is the bucket width of computed candles."""

    kind: SeriesKind
    instrument: str
    start: datetime
    end: datetime
    scale: int
    price_format: PriceFormat = "decimal"
    timeframe: str | None = None
    side: str | None = None
    width: timedelta | None = None

    @property
    def price_scale(self) -> int:
        """Decimals of the prices served: mid prices have one more than the instrument."""
        return self.scale + (1 if self.side == "mid" and self.kind == "candles" else 0)

    @property
    def ledger_kind(self) -> str:
        """The ingest-log kind whose units hold this series' rows."""
        if self.kind == "source_candles":
            assert self.timeframe is not None and self.side is not None
            return str(Kind.candles(self.timeframe, self.side))
        return TICKS

    def tick_window(self) -> tuple[datetime, datetime]:
        """The ``ts`` range of the rows this series reads: for computed candles, the ticks of
        every bucket that starts in ``[start, end)``; otherwise ``[start, end)``."""
        if self.kind != "candles":
            return self.start, self.end
        assert self.width is not None
        return ceil_bucket(self.start, self.width), ceil_bucket(self.end, self.width)

    def description(self) -> str:
        """Where the rows come from, for the answer's ``source``."""
        if self.kind == "ticks":
            return "ticks"
        if self.kind == "source_candles":
            return f"candles (source candles, {self.timeframe} {self.side})"
        return f"ohlcv {self.timeframe} {self.side} computed from ticks"

    def cache_key(self) -> str:
        """The series' identity in cache keys and ETags."""
        return "|".join(
            str(x)
            for x in (
                self.kind,
                self.instrument,
                self.start.isoformat(),
                self.end.isoformat(),
                self.scale,
                self.price_format,
                self.timeframe,
                self.side,
            )
        )


def ceil_bucket(t: datetime, width: timedelta) -> datetime:
    """The first bucket start (from :data:`ORIGIN`, every ``width``) at or after ``t``."""
    n, rem = divmod(t - ORIGIN, width)
    return ORIGIN + (n + (1 if rem else 0)) * width


def candle_source(timeframe: str, timescaledb: bool) -> tuple[str, str | None]:
    """Where computed candles of ``timeframe`` (canonical, fixed) come from:
    ``("view", "ohlcv_1m")`` for an aggregate of that very timeframe on TimescaleDB,
    ``("rollup", "ohlcv_1h")`` for a multiple of an aggregate on TimescaleDB, ``("ticks",
    None)`` otherwise."""
    tf = parse_timeframe(timeframe)
    if not timescaledb:
        return "ticks", None
    if str(tf) in TIMEFRAMES:
        return "view", view_name(str(tf))
    base = rollup_base(tf)  # the one rule the CLI's candles follow too
    return ("rollup", view_name(base)) if base else ("ticks", None)
