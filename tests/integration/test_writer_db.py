"""The writer against a real PostgreSQL: schema, exact storage, idempotent unit replace."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import numpy as np
import pytest
from support.golden_db import assert_hour_equals_golden, golden_tick_hours, sample_tick_batches
from tickpipe_shared.columns import Ticks
from tickpipe_shared.config import Settings
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.kafka.records import RetryableError
from tickpipe_shared.units import HOUR_MS, Unit
from tickpipe_shared.wire.batch import BatchMeta, TickBatch
from tickpipe_writer.stage import Writer
from tickpipe_writer.store import write

pytestmark = pytest.mark.integration

H0 = int(datetime(2021, 3, 1, 10, tzinfo=UTC).timestamp() * 1000)


def make_batch(
    n: int,
    *,
    part: int = 0,
    parts: int = 1,
    sha: str = "a" * 64,
    start: int = H0,
    instrument: str = "USDJPY",
    scale: int = 3,
    first_point: int = 110_123,
) -> TickBatch:
    """``n`` ticks one second apart, bid/ask in points starting at ``first_point``."""
    ts = start + part * 1000 * n + np.arange(n, dtype=np.int64) * 1000
    bid = first_point + np.arange(n, dtype=np.int64)
    ticks = Ticks(ts, bid, bid + 7, np.full(n, 1.25), np.full(n, 0.5))
    meta = BatchMeta(
        unit=Unit("dukascopy-bi5", instrument, "ticks", start, start + HOUR_MS),
        part=part,
        part_count=parts,
        rows=n,
        price_scale=scale,
        payload_sha256=sha,
        request_id="r1",
        fetched_at_ms=start,
        decoded_at_ms=start,
    )
    return TickBatch(meta, ticks)


async def count(conn: asyncpg.Connection, instrument: str = "USDJPY") -> int:
    return int(await conn.fetchval("SELECT count(*) FROM ticks WHERE instrument = $1", instrument))


async def test_migrate_creates_plain_tables_and_is_idempotent(conn: asyncpg.Connection) -> None:
    report = await migrate(conn)
    assert report.applied == [] and report.current >= 1
    variant = await conn.fetchval("SELECT variant FROM schema_migrations WHERE version = 1")
    assert variant == ("timescaledb" if report.timescaledb else "postgresql")
    tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
    assert {"ticks", "ingest_log", "instruments", "schema_migrations"} <= tables


async def test_prices_volumes_and_times_are_exact(conn: asyncpg.Connection) -> None:
    await write(conn, [make_batch(3)])
    rows = await conn.fetch(
        "SELECT (extract(epoch FROM ts)*1000)::bigint AS ms, bid_points, ask_points, bid_volume, "
        "ask_volume, flags FROM ticks ORDER BY ts"
    )
    assert [r["ms"] for r in rows] == [H0, H0 + 1000, H0 + 2000]
    # Points as the batch had them; the scale that makes them prices is the instrument's.
    assert [r["bid_points"] for r in rows] == [110_123, 110_124, 110_125]
    assert [r["ask_points"] for r in rows] == [110_130, 110_131, 110_132]
    assert await conn.fetchval("SELECT price_scale FROM instruments") == 3
    assert {(r["bid_volume"], r["ask_volume"], r["flags"]) for r in rows} == {(1.25, 0.5, 0)}
    log = await conn.fetchrow("SELECT * FROM ingest_log")
    assert (log["state"], log["rows"], log["parts_written"], log["payload_sha256"]) == (
        "stored",
        3,
        1,
        "a" * 64,
    )
    assert await conn.fetchval("SELECT price_scale FROM instruments WHERE instrument='USDJPY'") == 3


async def test_unit_written_again_replaces_itself(conn: asyncpg.Connection) -> None:
    await write(conn, [make_batch(5)])
    await write(conn, [make_batch(5)])  # redelivery
    assert await count(conn) == 5
    await write(conn, [make_batch(2, sha="b" * 64)])  # re-fetched, different payload
    assert await count(conn) == 2
    assert await conn.fetchval("SELECT count(*) FROM ingest_log") == 1


async def test_parts_and_redelivered_suffix_do_not_duplicate(conn: asyncpg.Connection) -> None:
    p = [make_batch(4, part=i, parts=3) for i in range(3)]
    work = await write(conn, [p[0], p[1]])
    assert await conn.fetchval("SELECT state FROM ingest_log") == "partial"
    work = await write(conn, [p[2], p[1], p[2]])  # part 2, then a redelivered suffix 1, 2
    assert work.duplicates == 2
    assert await count(conn) == 12
    assert await conn.fetchval("SELECT state FROM ingest_log") == "stored"
    # A full replay (parts 0, 1, 2 again) in one transaction replaces the unit once.
    await write(conn, [*p, *p])
    assert await count(conn) == 12


async def test_empty_unit_is_recorded_as_empty(conn: asyncpg.Connection) -> None:
    await write(conn, [make_batch(0)])
    assert await count(conn) == 0
    assert await conn.fetchval("SELECT state FROM ingest_log") == "empty"


async def test_other_units_and_instruments_are_untouched(conn: asyncpg.Connection) -> None:
    await write(conn, [make_batch(3), make_batch(3, start=H0 + HOUR_MS)])
    await write(conn, [make_batch(3, instrument="XAUUSD", first_point=1_800_123)])
    await write(conn, [make_batch(1)])  # replace the first USDJPY hour only
    assert await count(conn) == 4
    assert await count(conn, "XAUUSD") == 3
    sql = "SELECT min(bid_points) FROM ticks WHERE instrument='XAUUSD'"
    assert await conn.fetchval(sql) == 1_800_123


async def test_database_down_is_retryable_not_a_failure(infra: Settings) -> None:
    settings = infra.model_copy(
        update={"database_url": infra.database_url.__class__("postgresql://u:p@127.0.0.1:1/x")}
    )
    failures: list[object] = []
    writer = Writer(settings, lambda r, e: failures.append(e))  # type: ignore[arg-type,return-value]

    class Rec:
        topic, partition, offset, key, headers = "t", 0, 0, b"k", []
        value = b""

    from tickpipe_shared.wire.batch import encode_batch

    Rec.value = encode_batch(make_batch(1))
    with pytest.raises(RetryableError, match="database unavailable"):
        await writer.process([Rec()])
    assert failures == []


async def test_real_sample_decoded_and_written_equals_golden(
    conn: asyncpg.Connection, dukascopy_dir: Path
) -> None:
    """Every tick payload of ../shared decoded and written: every row equals the golden CSVs."""
    hours = golden_tick_hours(dukascopy_dir)
    # A small batch limit forces multi-part units through the writer too.
    batches = sample_tick_batches(dukascopy_dir, hours, max_batch_bytes=64 * 1024)
    assert len(hours) == 50
    assert any(b.meta.part_count > 1 for b in batches)
    await write(conn, batches)
    for g in hours:
        await assert_hour_equals_golden(conn, g)
    total = sum(len(g.rows) for g in hours)
    assert await count(conn, "EURUSD") == total == 267_970 + 3_551


def with_quality(batch: TickBatch, quality: dict[str, int]) -> TickBatch:
    from dataclasses import replace

    return TickBatch(replace(batch.meta, quality=quality), batch.ticks, batch.flags)


async def test_quality_report_sums_the_parts_of_a_unit(conn: asyncpg.Connection) -> None:
    p0 = with_quality(make_batch(2, part=0, parts=2), {"gap": 1})
    p1 = with_quality(make_batch(2, part=1, parts=2), {"gap": 2, "price_spike": 1})
    await write(conn, [p0, p1])  # both parts in one transaction
    assert await conn.fetchval("SELECT quality FROM ingest_log") == '{"gap": 3, "price_spike": 1}'
    await write(conn, [p0])  # restarted: only part 0 so far
    assert await conn.fetchval("SELECT quality FROM ingest_log") == '{"gap": 1}'
    await write(conn, [p1])  # continued in another transaction: counts add up
    assert await conn.fetchval("SELECT quality FROM ingest_log") == '{"gap": 3, "price_spike": 1}'


async def test_a_write_leaves_no_cyclic_garbage_holding_its_copy_stream(
    conn: asyncpg.Connection,
) -> None:
    """Flat memory: what a transaction allocates is freed by reference counting when it ends.
    Garbage in reference cycles waits for a full collection, which under load can be tens of
    seconds away — long enough for tens of COPY streams to pile up (asyncpg keeps a file-like
    COPY source in a per-call class's closure; the writer therefore passes a buffer)."""
    import gc

    await migrate(conn)
    batch = make_batch(3_600)  # a COPY stream of about 200 kB
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        await write(conn, [batch])
        gc.collect()
        sizes = [
            memoryview(o).nbytes if isinstance(o, bytes | bytearray | memoryview) else 0
            for o in gc.garbage
        ]
        files = [type(o).__name__ for o in gc.garbage if hasattr(o, "read")]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert max(sizes, default=0) < 10_000 and files == []
    assert await count(conn) == 3_600
