"""Read-side candle queries: OHLCV candles of any fixed timeframe computed from ticks, and
source candles as the sources served them (table ``candles``).

Migration 0002 creates ``ohlcv_1m`` … ``ohlcv_1d`` as continuous aggregates on TimescaleDB and as
plain views over ``ticks`` on PostgreSQL, with the same columns, so :func:`candles_sql` is one
query text for both. Those four timeframes are read from their view; any other fixed timeframe
(``15m``, ``4h``, ``1w``, ``30s`` …) is rolled up with ``date_bin`` from the coarsest view whose
width divides it (from ``ticks`` when none does), which is exact: OHLC of OHLC, sums of counts
and volumes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from tickpipe_shared.db.ledger import source_candle_sides as source_candle_sides
from tickpipe_shared.kinds import Kind, KindError, Timeframe

#: Timeframe → bucket width. Each has an ``ohlcv_<timeframe>`` view / continuous aggregate.
TIMEFRAMES: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}

#: Columns of every ``ohlcv_<timeframe>``, in order.
CANDLE_COLUMNS: tuple[str, ...] = (
    "instrument",
    "bucket",
    "bid_open",
    "bid_high",
    "bid_low",
    "bid_close",
    "ask_open",
    "ask_high",
    "ask_low",
    "ask_close",
    "mid_open",
    "mid_high",
    "mid_low",
    "mid_close",
    "tick_count",
    "bid_volume",
    "ask_volume",
)


#: Where roll-up buckets start: a Monday (TimescaleDB's ``time_bucket`` origin), so weeks run
#: Monday to Monday; every timeframe dividing a day is aligned to midnight UTC anyway.
BUCKET_ORIGIN = "2000-01-03 00:00:00+00"


class UnknownTimeframeError(ValueError):
    """A timeframe that candles cannot be computed at: malformed, or a calendar one (months,
    quarters, years have no fixed width)."""

    def __init__(self, timeframe: str, why: str | None = None) -> None:
        super().__init__(
            f"unknown timeframe {timeframe!r}: "
            + (why or f"expected a fixed timeframe such as {', '.join(TIMEFRAMES)}, 15m, 4h, 1w")
        )
        self.timeframe = timeframe


def parse_timeframe(timeframe: str) -> Timeframe:
    """The fixed :class:`Timeframe` of ``timeframe`` (``"15m"``, ``"4h"``, ``"60s"`` → 1m).
    Raises :class:`UnknownTimeframeError` for a malformed or calendar timeframe."""
    try:
        tf = Timeframe.parse(timeframe)
    except KindError as e:
        raise UnknownTimeframeError(timeframe, str(e)) from None
    if tf.duration_ms is None:
        raise UnknownTimeframeError(
            timeframe, "calendar timeframes (mo, q, y) have no fixed width; use 1d or 1w candles"
        )
    return tf


def rollup_base(tf: Timeframe) -> str | None:
    """The coarsest of :data:`TIMEFRAMES` whose width divides ``tf`` (``None``: none does, the
    candles come from ``ticks``)."""
    width = tf.duration_ms or 0
    bases = [name for name, w in TIMEFRAMES.items() if width % int(w.total_seconds() * 1000) == 0]
    return max(bases, key=lambda name: TIMEFRAMES[name]) if bases else None


@dataclass(frozen=True, slots=True)
class Candle:
    """One candle: the ticks of ``instrument`` with ``bucket <= ts < bucket + width``.

    Prices are float8 as stored (bid/ask read back as the exact decimal at the instrument's
    scale; mid = (bid + ask) / 2 per tick). ``tick_count`` counts every stored tick, flagged
    ones included; volumes are sums in the source's unit (``None`` when no tick had one).
    """

    instrument: str
    bucket: datetime
    bid_open: float
    bid_high: float
    bid_low: float
    bid_close: float
    ask_open: float
    ask_high: float
    ask_low: float
    ask_close: float
    mid_open: float
    mid_high: float
    mid_low: float
    mid_close: float
    tick_count: int
    bid_volume: float | None
    ask_volume: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (``bucket`` as ISO-8601 UTC with ``Z``)."""
        d = asdict(self)
        d["bucket"] = self.bucket.isoformat().replace("+00:00", "Z")
        return d


def view_name(timeframe: str) -> str:
    """``ohlcv_<timeframe>``; raises :class:`UnknownTimeframeError` for a timeframe without one."""
    if timeframe not in TIMEFRAMES:
        raise UnknownTimeframeError(timeframe, f"views exist for {', '.join(TIMEFRAMES)}")
    return f"ohlcv_{timeframe}"


_WHERE = "WHERE instrument = $1 AND bucket >= $2::timestamptz AND bucket < $3::timestamptz\n"

def _bucketed_sql(
    source: str, time_col: str, prices: dict[str, tuple[str, ...]], count: str
) -> str:
    """Candles of ``source`` (``ticks``, or a base view to roll up) in ``date_bin`` buckets.

    ``prices`` maps each side (bid, ask, mid) to its open/high/low/close source expressions,
    ``count`` is the tick-count expression. First and last come from ordered arrays: TimescaleDB's
    first()/last() do not exist on plain PostgreSQL. Placeholders left for :func:`candles_sql`:
    ``{columns}``, ``{interval}``, ``{origin}``, ``{where}``.
    """
    sides = ",\n".join(
        f"         (array_agg({o} ORDER BY {time_col}))[1] AS {side}_open, max({h}) AS {side}_high,"
        f"\n         min({lo}) AS {side}_low,"
        f" (array_agg({c} ORDER BY {time_col} DESC))[1] AS {side}_close"
        for side, (o, h, lo, c) in prices.items()
    )
    return (
        "SELECT {columns}\nFROM (\n"
        f"  SELECT instrument, date_bin({{interval}}, {time_col}, {{origin}}) AS bucket,\n"
        f"{sides},\n"
        f"         {count} AS tick_count,\n"
        "         sum(bid_volume) AS bid_volume, sum(ask_volume) AS ask_volume\n"
        f"  FROM {source}\n"
        "  WHERE instrument = $1\n"
        f"    AND {time_col} >= date_bin({{interval}}, $2::timestamptz, {{origin}})\n"
        f"    AND {time_col} < date_bin({{interval}}, $3::timestamptz, {{origin}}) + {{interval}}\n"
        "  GROUP BY instrument, 2\n"
        ") AS c\n"
        "{where}ORDER BY bucket"
    )


#: Candles straight from ticks, for timeframes no aggregate's width divides (e.g. 30s).
_FROM_TICKS = _bucketed_sql(
    "ticks",
    "ts",
    {"bid": ("bid",) * 4, "ask": ("ask",) * 4, "mid": ("(bid + ask) / 2",) * 4},
    "count(*)",
)


def _rollup_sql(base: str) -> str:
    """A roll-up of the candles of view ``base``: OHLC of OHLC, sums of counts and volumes."""
    prices = {side: tuple(f"{side}_{p}" for p in ("open", "high", "low", "close"))
              for side in ("bid", "ask", "mid")}  # fmt: skip
    return _bucketed_sql(base, "bucket", prices, "sum(tick_count)::bigint")


def candles_sql(timeframe: str) -> str:
    """The candles query for ``timeframe``: parameters ``$1`` instrument (text), ``$2`` from
    and ``$3`` to (timestamptz); candles whose bucket starts in ``[$2, $3)``, oldest first.

    Raises :class:`UnknownTimeframeError` for a malformed or calendar timeframe."""
    tf = parse_timeframe(timeframe)
    columns = ", ".join(CANDLE_COLUMNS)
    if str(tf) in TIMEFRAMES:
        return f"SELECT {columns}\nFROM {view_name(str(tf))}\n{_WHERE}ORDER BY bucket"
    seconds = (tf.duration_ms or 0) // 1000
    parts = {
        "columns": columns,
        "interval": f"INTERVAL '{seconds} seconds'",
        "origin": f"TIMESTAMPTZ '{BUCKET_ORIGIN}'",
        "where": _WHERE,
    }
    base = rollup_base(tf)
    template = _FROM_TICKS if base is None else _rollup_sql(view_name(base))
    return template.format(**parts)


async def candles(
    conn: asyncpg.Connection, instrument: str, timeframe: str, from_: datetime, to: datetime
) -> list[Candle]:
    """Candles of ``instrument`` at ``timeframe`` whose bucket starts in ``[from_, to)``.

    ``from_``/``to`` must be timezone-aware. Raises :class:`UnknownTimeframeError` for a
    malformed or calendar timeframe and :class:`ValueError` for naive times or an empty range.
    """
    sql = candles_sql(timeframe)
    if from_.tzinfo is None or to.tzinfo is None:
        raise ValueError("from_ and to must be timezone-aware datetimes")
    if to <= from_:
        raise ValueError(f"empty range: to ({to.isoformat()}) <= from ({from_.isoformat()})")
    rows = await conn.fetch(sql, instrument, from_, to)
    return [Candle(**dict(r)) for r in rows]


async def price_scale(conn: asyncpg.Connection, instrument: str) -> int | None:
    """Decimals of ``instrument``'s prices as stored (``None`` when nothing was stored)."""
    value = await conn.fetchval(
        "SELECT price_scale FROM instruments WHERE instrument = $1", instrument
    )
    return None if value is None else int(value)


# --------------------------------------------------------------------------- source candles

#: Columns of the ``candles`` table (source candles, migration 0004), in order.
SOURCE_CANDLE_COLUMNS: tuple[str, ...] = (
    "instrument",
    "timeframe",
    "side",
    "ts",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "flags",
)


@dataclass(frozen=True, slots=True)
class SourceCandle:
    """One candle as the source served it (table ``candles``), starting at ``ts``.

    Prices are float8 as stored (exact decimals at the instrument's scale). ``volume`` is in
    the source's unit, ``None`` when the source gives none (Deriv). ``flags``: one bit per
    validation rule that flagged the candle (0 = clean).
    """

    instrument: str
    timeframe: str
    side: str
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float | None
    flags: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (``ts`` as ISO-8601 UTC with ``Z``)."""
        d = asdict(self)
        d["ts"] = self.ts.isoformat().replace("+00:00", "Z")
        return d


def source_candles_sql() -> str:
    """The source-candles query: ``$1`` instrument, ``$2`` timeframe, ``$3`` side (text),
    ``$4`` from and ``$5`` to (timestamptz); candles starting in ``[$4, $5)``, oldest first (one
    range of the primary key's index)."""
    return (
        f"SELECT {', '.join(SOURCE_CANDLE_COLUMNS)}\n"
        "FROM candles\n"
        "WHERE instrument = $1 AND timeframe = $2 AND side = $3\n"
        "  AND ts >= $4::timestamptz AND ts < $5::timestamptz\n"
        "ORDER BY ts"
    )


def source_series(timeframe: str, side: str) -> tuple[str, str]:
    """``(timeframe, side)`` in their stored spelling (``60s`` → ``1m``). Raises
    :class:`~tickpipe_shared.kinds.KindError` for a malformed timeframe or an unknown side."""
    kind = Kind.candles(timeframe, side)
    return str(kind.timeframe), str(kind.side)


async def source_candles(
    conn: asyncpg.Connection,
    instrument: str,
    timeframe: str,
    side: str,
    from_: datetime,
    to: datetime,
) -> list[SourceCandle]:
    """Source candles of ``instrument`` at ``timeframe`` (any well-formed timeframe, e.g. ``1m``,
    ``1h``, ``1d``, ``1w``, ``1mo``) and ``side`` (``bid``, ``ask``, ``mid``, ``trade``) that
    start in ``[from_, to)``.

    Raises :class:`~tickpipe_shared.kinds.KindError` for a malformed timeframe or side and
    :class:`ValueError` for naive times or an empty range.
    """
    tf, sd = source_series(timeframe, side)
    if from_.tzinfo is None or to.tzinfo is None:
        raise ValueError("from_ and to must be timezone-aware datetimes")
    if to <= from_:
        raise ValueError(f"empty range: to ({to.isoformat()}) <= from ({from_.isoformat()})")
    rows = await conn.fetch(source_candles_sql(), instrument, tf, sd, from_, to)
    return [SourceCandle(**dict(r)) for r in rows]
