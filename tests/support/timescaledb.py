"""TimescaleDB continuous aggregates against OHLCV computed in SQL from the raw ticks."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
from tickpipe_shared.db.ohlcv import (
    BUCKET_ORIGIN,
    CANDLE_COLUMNS,
    CANDLE_PRICES,
    STORED_CANDLE_COLUMNS,
    TIMEFRAMES,
    points_column,
)
from tickpipe_writer.aggregates import pending_windows

#: What each aggregate is, computed from ``ticks`` in SQL (the reference), in points.
RAW_SQL = """
WITH t AS (SELECT *, (bid_points + ask_points)::float8 / 2 AS mid FROM ticks)
SELECT instrument, time_bucket(INTERVAL '{width}', ts, TIMESTAMPTZ '{origin}') AS bucket,
       first(bid_points, ts) AS bid_open_points, max(bid_points) AS bid_high_points,
       min(bid_points) AS bid_low_points, last(bid_points, ts) AS bid_close_points,
       first(ask_points, ts) AS ask_open_points, max(ask_points) AS ask_high_points,
       min(ask_points) AS ask_low_points, last(ask_points, ts) AS ask_close_points,
       first(mid, ts) AS mid_open_points, max(mid) AS mid_high_points,
       min(mid) AS mid_low_points, last(mid, ts) AS mid_close_points,
       count(*) AS tick_count, sum(bid_volume) AS bid_volume, sum(ask_volume) AS ask_volume
FROM t WHERE instrument = $1
GROUP BY 1, 2 ORDER BY 2
"""


async def materialized(conn: asyncpg.Connection, view: str, instrument: str) -> list[Any]:
    """``view``'s rows from its materialization only (no real-time part)."""
    await conn.execute(f"ALTER MATERIALIZED VIEW {view} SET (timescaledb.materialized_only = true)")
    try:
        return list(
            await conn.fetch(
                f"SELECT {', '.join(STORED_CANDLE_COLUMNS)} FROM {view} WHERE instrument = $1 "
                "ORDER BY bucket",
                instrument,
            )
        )
    finally:
        await conn.execute(
            f"ALTER MATERIALIZED VIEW {view} SET (timescaledb.materialized_only = false)"
        )


def as_prices(rows: Sequence[Any], scale: int) -> list[dict[str, Any]]:
    """Candles with :data:`STORED_CANDLE_COLUMNS` (points) as :data:`CANDLE_COLUMNS` (prices:
    ``points / 10^scale``, correctly rounded as the read queries compute them)."""
    f = float(10**scale)
    return [
        {c: r[points_column(c)] / f if c in CANDLE_PRICES else r[c] for c in CANDLE_COLUMNS}
        for r in rows
    ]


def assert_same_candles(
    got: Sequence[Any],
    want: Sequence[Any],
    what: str,
    columns: Sequence[str] = STORED_CANDLE_COLUMNS,
) -> None:
    """Equal candle by candle in ``columns``: prices and counts exactly, volume sums to 1e-9
    relative (NULL when every tick had none)."""
    assert len(got) == len(want) > 0, (what, len(got), len(want))
    for g, w in zip(got, want, strict=True):
        for col in columns:
            if col.endswith("_volume") and w[col] is not None:
                assert math.isclose(g[col], w[col], rel_tol=1e-9), (what, w["bucket"], col)
            else:
                assert g[col] == w[col], (what, w["bucket"], col, g[col], w[col])


async def assert_aggregates_equal_raw(conn: asyncpg.Connection, instrument: str) -> None:
    for tf, width in TIMEFRAMES.items():
        raw = await conn.fetch(
            RAW_SQL.format(width=f"{int(width.total_seconds())} seconds", origin=BUCKET_ORIGIN),
            instrument,
        )
        assert_same_candles(await materialized(conn, f"ohlcv_{tf}", instrument), raw, tf)


async def aggregates_caught_up(conn: asyncpg.Connection, timeout_s: float = 60.0) -> None:
    """Wait until the writer's background refresh has refreshed every pending window (what a
    reader that needs exact aggregates right after a write waits for). Fails after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while (n := await pending_windows(conn)) > 0:
        assert time.monotonic() < deadline, f"{n} OHLCV windows still pending after {timeout_s} s"
        await asyncio.sleep(0.1)
