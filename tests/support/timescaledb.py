"""TimescaleDB continuous aggregates against OHLCV computed in SQL from the raw ticks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import asyncpg
from tickpipe_shared.db.ohlcv import BUCKET_ORIGIN, STORED_CANDLE_COLUMNS, TIMEFRAMES

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


def assert_same_candles(got: Sequence[Any], want: Sequence[Any], what: str) -> None:
    assert len(got) == len(want) > 0, what
    for g, w in zip(got, want, strict=True):
        for col in STORED_CANDLE_COLUMNS:
            if col.endswith("_volume"):
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
