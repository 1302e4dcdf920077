"""Read side of ``tickpipe export``: ticks or candles streamed month by month.

Everything here streams: a server-side cursor inside a read-only transaction per month, fetched
in chunks of ``chunk_rows`` rows, so memory stays bounded however long the exported range is.
Rows come out oldest first; ticks that share a timestamp are ordered by their values, so that
exporting the same stored data twice gives byte-identical files.

Times are returned as integer milliseconds since the epoch (UTC), which is the precision the
writer stores; prices as the stored float8 (``points / 10^scale``, exact at the instrument's
scale once formatted with ``scale`` decimals).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from tickpipe_shared.db.ohlcv import CANDLE_COLUMNS, view_name

#: Columns of an exported tick file, in order (``ts`` in ms since the epoch, UTC).
TICK_COLUMNS: tuple[str, ...] = ("ts", "bid", "ask", "bid_volume", "ask_volume", "flags")

#: Columns of an exported candle file, in order (``bucket`` in ms since the epoch, UTC).
CANDLE_EXPORT_COLUMNS: tuple[str, ...] = tuple(c for c in CANDLE_COLUMNS if c != "instrument")

#: Rows fetched from the server-side cursor at a time.
DEFAULT_CHUNK_ROWS = 50_000

_MS = "floor(extract(epoch FROM {col}) * 1000)::bigint"


def ticks_export_sql() -> str:
    """Ticks of ``$1`` with ``$2 <= ts < $3``, in a deterministic order."""
    return (
        f"SELECT {_MS.format(col='ts')} AS ts, bid, ask, bid_volume, ask_volume, flags\n"
        "FROM ticks\n"
        "WHERE instrument = $1 AND ts >= $2::timestamptz AND ts < $3::timestamptz\n"
        "ORDER BY ts, bid, ask, bid_volume, ask_volume, flags"
    )


def candles_export_sql(timeframe: str) -> str:
    """Candles of ``$1`` whose bucket starts in ``[$2, $3)``, oldest first."""
    cols = [_MS.format(col="bucket") + " AS bucket", *CANDLE_EXPORT_COLUMNS[1:]]
    return (
        f"SELECT {', '.join(cols)}\n"
        f"FROM {view_name(timeframe)}\n"
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


def export_sql(kind: str, timeframe: str | None) -> str:
    """The export query of ``kind`` (``ticks`` or ``candles`` at ``timeframe``)."""
    if kind == "ticks":
        return ticks_export_sql()
    if kind == "candles" and timeframe is not None:
        return candles_export_sql(timeframe)
    raise ValueError(f"unknown export kind {kind!r} (timeframe {timeframe!r})")


def export_columns(kind: str) -> tuple[str, ...]:
    return TICK_COLUMNS if kind == "ticks" else CANDLE_EXPORT_COLUMNS


async def sources(
    conn: asyncpg.Connection, instrument: str, from_: datetime, to: datetime
) -> list[str]:
    """Distinct ``ingest_log`` sources of the tick units overlapping ``[from_, to)`` (units
    that failed hold no data and do not count)."""
    rows = await conn.fetch(
        "SELECT DISTINCT source FROM ingest_log WHERE instrument = $1 AND kind = 'ticks' "
        "AND unit_start < $3::timestamptz AND unit_end > $2::timestamptz "
        "AND state <> 'failed' ORDER BY source",
        instrument,
        from_,
        to,
    )
    return [str(r["source"]) for r in rows]
