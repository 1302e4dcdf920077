"""Read side of ``tickpipe export``: ticks, OHLCV candles or source candles streamed month by
month.

Export kinds: ``ticks``; ``candles`` (the OHLCV aggregates over ticks, at a ``timeframe`` of
:data:`~tickpipe_shared.db.ohlcv.TIMEFRAMES`); a source-candle kind ``candles:<timeframe>:<side>``
(table ``candles``, as the source served them).

Everything here streams: a server-side cursor inside a read-only transaction per month, fetched
in chunks of ``chunk_rows`` rows, so memory stays bounded however long the exported range is.
Rows come out oldest first; ticks that share a timestamp are ordered by their values, so that
exporting the same stored data twice gives byte-identical files.

Times are returned as integer milliseconds since the epoch (UTC), which is the precision the
writer stores; prices as float8 computed from the stored points (``points / 10^scale``,
correctly rounded: exact at the instrument's scale once formatted with ``scale`` decimals).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from tickpipe_shared.db.ledger import sources as sources
from tickpipe_shared.db.ohlcv import (
    CANDLE_COLUMNS,
    SCALE_JOIN,
    SOURCE_CANDLE_COLUMNS,
    price_select,
    source_series,
    view_name,
)
from tickpipe_shared.kinds import Kind

#: Columns of an exported tick file, in order (``ts`` in ms since the epoch, UTC).
TICK_COLUMNS: tuple[str, ...] = ("ts", "bid", "ask", "bid_volume", "ask_volume", "flags")

#: Columns of an exported candle file, in order (``bucket`` in ms since the epoch, UTC).
CANDLE_EXPORT_COLUMNS: tuple[str, ...] = tuple(c for c in CANDLE_COLUMNS if c != "instrument")

#: Columns of an exported source-candle file, in order (``ts``: candle start, ms, UTC).
SOURCE_CANDLE_EXPORT_COLUMNS: tuple[str, ...] = tuple(
    c for c in SOURCE_CANDLE_COLUMNS if c not in ("instrument", "timeframe", "side")
)

#: Rows fetched from the server-side cursor at a time.
DEFAULT_CHUNK_ROWS = 50_000

_MS = "floor(extract(epoch FROM {col}) * 1000)::bigint"


def ticks_export_sql() -> str:
    """Ticks of ``$1`` with ``$2 <= ts < $3``, in a deterministic order."""
    return (
        f"SELECT {_MS.format(col='ts')} AS ts, bid_points / s.f AS bid, ask_points / s.f AS ask,"
        " bid_volume, ask_volume, flags\n"
        f"FROM ticks {SCALE_JOIN}\n"
        "WHERE instrument = $1 AND ts >= $2::timestamptz AND ts < $3::timestamptz\n"
        "ORDER BY ts, bid_points, ask_points, bid_volume, ask_volume, flags"
    )


def candles_export_sql(timeframe: str) -> str:
    """Candles of ``$1`` whose bucket starts in ``[$2, $3)``, oldest first."""
    cols = [_MS.format(col="bucket") + " AS bucket", price_select(CANDLE_EXPORT_COLUMNS[1:])]
    return (
        f"SELECT {', '.join(cols)}\n"
        f"FROM {view_name(timeframe)} {SCALE_JOIN}\n"
        "WHERE instrument = $1 AND bucket >= $2::timestamptz AND bucket < $3::timestamptz\n"
        "ORDER BY bucket"
    )


@dataclass(frozen=True, slots=True)
class Month:
    """One calendar month (UTC) cut to the requested range: ``[start, end)``."""

    year: int
    month: int
    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def months(from_: datetime, to: datetime) -> Iterator[Month]:
    """The calendar months (UTC) that ``[from_, to)`` touches, each cut to the range."""
    if from_.tzinfo is None or to.tzinfo is None:
        raise ValueError("from_ and to must be timezone-aware datetimes")
    if to <= from_:
        raise ValueError(f"empty range: to ({to.isoformat()}) <= from ({from_.isoformat()})")
    start, end = from_.astimezone(UTC), to.astimezone(UTC)
    y, m = start.year, start.month
    while True:
        first = datetime(y, m, 1, tzinfo=UTC)
        if first >= end:
            return
        ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
        nxt = datetime(ny, nm, 1, tzinfo=UTC)
        yield Month(y, m, max(first, start), min(nxt, end))
        y, m = ny, nm


async def stream_rows(
    conn: asyncpg.Connection,
    sql: str,
    *args: Any,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> AsyncIterator[list[tuple[Any, ...]]]:
    """The rows of ``sql`` in chunks of at most ``chunk_rows``, from a server-side cursor in a
    read-only repeatable-read transaction (one consistent snapshot per call)."""
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        cursor = await conn.cursor(sql, *args)
        while True:
            rows = await cursor.fetch(chunk_rows)
            if not rows:
                return
            yield [tuple(r) for r in rows]


def source_candles_export_sql() -> str:
    """Source candles of ``$1`` at timeframe ``$4`` and side ``$5`` starting in ``[$2, $3)``,
    oldest first (the identity is unique: the order is total)."""
    cols = [_MS.format(col="ts") + " AS ts", *SOURCE_CANDLE_EXPORT_COLUMNS[1:]]
    return (
        f"SELECT {', '.join(cols)}\n"
        "FROM candles\n"
        "WHERE instrument = $1 AND timeframe = $4 AND side = $5\n"
        "  AND ts >= $2::timestamptz AND ts < $3::timestamptz\n"
        "ORDER BY ts"
    )


def is_source_candles(kind: str) -> bool:
    """True for a source-candle export kind ``candles:<timeframe>:<side>``."""
    return kind.startswith("candles:")


def export_sql(kind: str, timeframe: str | None) -> str:
    """The export query of ``kind``: ``ticks``, ``candles`` at ``timeframe``, or a source-candle
    kind (then :func:`export_args` gives its ``$4``/``$5``). Parameters ``$1`` instrument,
    ``$2``/``$3`` the range. Raises :class:`ValueError` for anything else."""
    if kind == "ticks":
        return ticks_export_sql()
    if kind == "candles" and timeframe is not None:
        return candles_export_sql(timeframe)
    if is_source_candles(kind):
        Kind.parse(kind)
        return source_candles_export_sql()
    raise ValueError(f"unknown export kind {kind!r} (timeframe {timeframe!r})")


def export_args(kind: str) -> tuple[str, ...]:
    """The query parameters of ``kind`` after the instrument and range: a source-candle kind's
    timeframe and side, nothing for the others. Raises
    :class:`~tickpipe_shared.kinds.KindError` for a malformed source-candle kind."""
    if not is_source_candles(kind):
        return ()
    k = Kind.parse(kind)
    return source_series(str(k.timeframe), str(k.side))


def export_columns(kind: str) -> tuple[str, ...]:
    """The columns of an exported file of ``kind``, in order."""
    if kind == "ticks":
        return TICK_COLUMNS
    return SOURCE_CANDLE_EXPORT_COLUMNS if is_source_candles(kind) else CANDLE_EXPORT_COLUMNS
