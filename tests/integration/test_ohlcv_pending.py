"""The writer's continuous-aggregate refresh off the write path (TimescaleDB): windows recorded in
``ohlcv_pending`` in the write's transaction, refreshed by a background round, kept across a
crash; and migration 0006 converting an existing database's float8 prices to points, compressed
chunks included."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from support.database import scratch_database
from support.ohlcv import hour_batch
from support.storage import skip_unless_timescaledb, storage_mode
from support.timescaledb import assert_aggregates_equal_raw, materialized
from tickpipe_shared.config import Settings
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.units import HOUR_MS, dt_to_ms
from tickpipe_shared.wire.batch import TickBatch
from tickpipe_writer.aggregates import OhlcvRefresher, pending_windows
from tickpipe_writer.store import write

pytestmark = pytest.mark.integration

H0 = int(datetime(2021, 3, 1, 10, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture
async def tsdb(infra: Settings) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Connection]]:
    skip_unless_timescaledb()
    async with scratch_database(infra, prefix="tp_pending") as dsn:
        conn = await asyncpg.connect(dsn)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:
            await migrate(conn, storage_mode())
            yield pool, conn
        finally:
            await pool.close()
            await conn.close()


def units(seed: int) -> list[TickBatch]:
    return [
        hour_batch(
            "EURUSD",
            H0 + h * HOUR_MS,
            300,
            seed=seed + h,
            scale=5,
            first_point=112_345,
            sha=f"{seed + h:064x}",
        )
        for h in range(3)
    ]


async def test_windows_wait_in_the_table_until_a_round_refreshes_them(
    tsdb: tuple[asyncpg.Pool, asyncpg.Connection],
) -> None:
    pool, conn = tsdb
    await write(conn, units(1), record_windows=True)
    # Committed with the ticks, not refreshed yet: the materialization is still empty.
    assert await pending_windows(conn) >= 1
    assert await materialized(conn, "ohlcv_1h", "EURUSD") == []
    refresher = await OhlcvRefresher.detect(conn)
    assert refresher is not None
    assert await refresher.drain(pool) >= 1
    assert await pending_windows(conn) == 0
    await assert_aggregates_equal_raw(conn, "EURUSD")
    # A rewrite of the same units (new ticks) is pending again, then exact again.
    await write(conn, units(7), record_windows=True)
    assert await pending_windows(conn) >= 1
    # The writer crashed here: a new one (another refresher) refreshes what was left.
    assert await OhlcvRefresher(refresher.views).drain(pool) >= 1
    assert await pending_windows(conn) == 0
    await assert_aggregates_equal_raw(conn, "EURUSD")


async def test_a_round_skips_while_another_writer_drains(
    tsdb: tuple[asyncpg.Pool, asyncpg.Connection],
) -> None:
    pool, conn = tsdb
    await write(conn, units(3), record_windows=True)
    refresher = await OhlcvRefresher.detect(conn)
    assert refresher is not None
    await conn.execute("SELECT pg_advisory_lock($1)", 0x6F686C63)
    try:
        assert await refresher.drain(pool) == 0
        assert await pending_windows(conn) >= 1
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", 0x6F686C63)
    assert await refresher.drain(pool) >= 1


async def test_migration_0006_converts_float_prices_and_compressed_chunks(infra: Settings) -> None:
    skip_unless_timescaledb()
    async with scratch_database(infra, prefix="tp_mig6") as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn, "on", target=5)
            await conn.execute(
                "INSERT INTO instruments (instrument, price_scale) VALUES ('EURUSD', 5), "
                "('USDJPY', 3)"
            )
            # Prices as version 5 stored them: points / 10^scale in float8; three days.
            await conn.execute(
                """INSERT INTO ticks (instrument, ts, bid, ask, bid_volume, ask_volume)
                   SELECT i.instrument, TIMESTAMPTZ '2021-03-01' + n * INTERVAL '7 s',
                          (p + n % 13) / 10::float8 ^ i.price_scale,
                          (p + 3 + n % 11) / 10::float8 ^ i.price_scale,
                          CASE WHEN n % 5 = 0 THEN NULL ELSE 1.25 END, 0.5
                   FROM generate_series(0, 35999) AS n,
                        (VALUES ('EURUSD', 112345), ('USDJPY', 110123)) AS v(instrument, p)
                   JOIN instruments i USING (instrument)"""
            )
            await conn.execute("SELECT compress_chunk(c) FROM show_chunks('ticks') AS c")
            before = await conn.fetch(
                "SELECT t.instrument, ts, round(bid * 10::float8 ^ price_scale)::bigint AS b, "
                "round(ask * 10::float8 ^ price_scale)::bigint AS a, bid_volume, ask_volume "
                "FROM ticks t JOIN instruments USING (instrument) ORDER BY 1, 2"
            )
            report = await migrate(conn, "on")
            assert 6 in report.applied
            after = await conn.fetch(
                "SELECT instrument, ts, bid_points AS b, ask_points AS a, bid_volume, ask_volume "
                "FROM ticks ORDER BY 1, 2"
            )
            assert [tuple(r) for r in after] == [tuple(r) for r in before]
            types = await conn.fetch(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'ticks' AND column_name LIKE '%points'"
            )
            assert {(r[0], r[1]) for r in types} == {
                ("bid_points", "bigint"), ("ask_points", "bigint")
            }  # fmt: skip
            jobs = await conn.fetch(
                "SELECT proc_name, hypertable_name FROM timescaledb_information.jobs"
            )
            assert ("policy_compression", "ticks") in {tuple(r) for r in jobs}
            # The refresh policies' first runs materialise the aggregates (they start at once);
            # once they are done, refresh as the writer does and compare.
            for _ in range(600):
                busy = await conn.fetchval(
                    "SELECT count(*) FILTER (WHERE job_status = 'Running' OR total_runs = 0) "
                    "FROM timescaledb_information.job_stats WHERE hypertable_name LIKE 'ohlcv_%'"
                )
                if not busy:
                    break
                await asyncio.sleep(0.1)
            refresher = await OhlcvRefresher.detect(conn)
            assert refresher is not None
            lo, hi = await conn.fetchrow("SELECT min(ts), max(ts) FROM ticks")
            await refresher.refresh_windows(conn, [(dt_to_ms(lo), dt_to_ms(hi) + 1)])
            for instrument in ("EURUSD", "USDJPY"):
                await assert_aggregates_equal_raw(conn, instrument)
        finally:
            await conn.close()
