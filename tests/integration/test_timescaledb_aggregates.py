"""The OHLCV continuous aggregates on a real TimescaleDB equal OHLCV computed in SQL from the raw
ticks, for the recorded sample written by the writer (which refreshes exactly the windows it
wrote), also after a backfill of an older range below the refresh watermark and after the
compression policy compressed the chunks and a day was written again into them.

Prices and counts must be equal exactly (prices read back as the exact decimal at the
instrument's scale); volume sums to 1e-9 relative (a flat sum and sums of sums add in another
order). Timeframes other than the aggregates' (15m, 4h, 1w) are rolled up from them and must
equal the same computation from ticks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from support.database import scratch_database
from support.golden_db import golden_tick_hours, sample_tick_batches
from support.records import Rec
from support.storage import require_timescaledb, storage_mode
from support.timescaledb import (
    RAW_SQL,
    aggregates_caught_up,
    as_prices,
    assert_aggregates_equal_raw,
    assert_same_candles,
)
from tickpipe_shared.config import Settings
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.db.ohlcv import BUCKET_ORIGIN, CANDLE_COLUMNS, candles
from tickpipe_shared.wire.batch import TickBatch, encode_batch
from tickpipe_writer.stage import Writer

pytestmark = pytest.mark.integration


@pytest.fixture
async def tsdb(infra: Settings) -> AsyncIterator[tuple[Settings, asyncpg.Connection]]:
    async with scratch_database(infra, prefix="tp_cagg") as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await require_timescaledb(await migrate(conn, storage_mode()))
            yield infra.model_copy(update={"database_url": infra.database_url.__class__(dsn)}), conn
        finally:
            await conn.close()


def _no_failures(record: Any, error: BaseException) -> Any:
    raise AssertionError(f"unexpected failure record: {error!r}")


async def write(writer: Writer, batches: Sequence[TickBatch], per: int = 40) -> None:
    """Write as the service does, then wait for its background refresh of the aggregates."""
    for i in range(0, len(batches), per):
        await writer.process(
            [Rec(encode_batch(b), offset=i + j) for j, b in enumerate(batches[i : i + per])]
        )
    conn = await asyncpg.connect(writer.settings.database_url.get_secret_value())
    try:
        await aggregates_caught_up(conn)
    finally:
        await conn.close()


async def test_aggregates_equal_ohlcv_from_raw_ticks_with_backfill_and_compression(
    tsdb: tuple[Settings, asyncpg.Connection], dukascopy_dir: Path
) -> None:
    settings, conn = tsdb
    hours = [g for g in golden_tick_hours(dukascopy_dir) if g.hour.year < 2026]
    assert len(hours) == 49
    batches = sample_tick_batches(dukascopy_dir, hours, max_batch_bytes=256 * 1024)
    cut = hours[len(hours) // 2].hour
    newer = [b for b in batches if b.meta.unit.start_ms >= cut.timestamp() * 1000]
    older = [b for b in batches if b.meta.unit.start_ms < cut.timestamp() * 1000]
    writer = Writer(settings, _no_failures)

    # The newer half first: the writer's refresh moves the watermark past it.
    await write(writer, newer)
    await assert_aggregates_equal_raw(conn, "EURUSD")
    # The older half is a backfill below the watermark: only the writer's exact-window refresh
    # makes it appear in the materialization.
    await write(writer, older)
    await assert_aggregates_equal_raw(conn, "EURUSD")

    # The compression policy compresses every chunk (the sample is years older than 7 days);
    # then the newer half is written again, into compressed chunks.
    job = await conn.fetchval(
        "SELECT job_id FROM timescaledb_information.jobs "
        "WHERE proc_name = 'policy_compression' AND hypertable_name = 'ticks'"
    )
    await conn.execute(f"CALL run_job({job})")
    assert await conn.fetchval(
        "SELECT bool_and(is_compressed) FROM timescaledb_information.chunks "
        "WHERE hypertable_name = 'ticks'"
    )
    await write(Writer(settings, _no_failures), newer)
    await assert_aggregates_equal_raw(conn, "EURUSD")
    assert await conn.fetchval("SELECT count(*) FROM ticks") == sum(len(g.rows) for g in hours)


@pytest.mark.parametrize("timeframe", ["15m", "4h", "1w", "30s"])
async def test_other_timeframes_roll_up_exactly(
    tsdb: tuple[Settings, asyncpg.Connection], dukascopy_dir: Path, timeframe: str
) -> None:
    settings, conn = tsdb
    hours = [g for g in golden_tick_hours(dukascopy_dir) if g.hour.year < 2026][:30]
    await write(Writer(settings, _no_failures), sample_tick_batches(dukascopy_dir, hours))
    seconds = {"15m": 900, "4h": 14_400, "1w": 604_800, "30s": 30}[timeframe]
    want = await conn.fetch(
        RAW_SQL.format(width=f"{seconds} seconds", origin=BUCKET_ORIGIN), "EURUSD"
    )
    lo = want[0]["bucket"]
    hi = want[-1]["bucket"] + timedelta(seconds=1)
    got = [c.to_dict() | {"bucket": c.bucket} for c in await candles(conn, "EURUSD", timeframe,
                                                                      lo, hi)]  # fmt: skip
    assert_same_candles(got, as_prices(want, 5), timeframe, CANDLE_COLUMNS)
    # A range starting inside a bucket gives the buckets that start in it, whole.
    inner = await candles(conn, "EURUSD", timeframe, lo + timedelta(seconds=1),
                          hi + timedelta(seconds=1))  # fmt: skip
    assert [c.bucket for c in inner] == [w["bucket"] for w in want[1:]]
    if len(want) > 1:
        assert inner[0].tick_count == want[1]["tick_count"]
    assert datetime(2000, 1, 3, tzinfo=UTC).weekday() == 0  # weeks start on Mondays
