"""The writer service's runners on the real Kafka and PostgreSQL when the database refuses a unit
with an error that waiting does not fix: after ``TICKPIPE_WRITER_DB_ERROR_ATTEMPTS`` attempts the
unit goes to ``failures`` with the reason, the ledger says ``failed`` (the writer's
``writer-failures`` runner), the other unit of the same partition is stored, the partition's
offsets are committed (nothing is held), and the metric counts the attempts.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import REGISTRY
from support.database import refuse_inserts_sql, scratch_database
from support.ohlcv import hour_batch
from support.storage import storage_mode
from tickpipe_shared.config import Settings
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.kafka.failure_records import FailureRecords
from tickpipe_shared.kafka.runtime import BatchPolicy, StageRunner
from tickpipe_shared.kafka.topics import FAILURES, PROGRESS, VALIDATED_BATCHES
from tickpipe_shared.metrics import Health
from tickpipe_shared.units import HOUR_MS
from tickpipe_shared.wire.batch import TickBatch, encode_batch
from tickpipe_writer.failures import STAGE as FAILURES_STAGE
from tickpipe_writer.failures import FailureLedger
from tickpipe_writer.stage import Writer

pytestmark = pytest.mark.integration

START = 1_614_592_800_000  # 2021-03-01T10:00Z


@pytest.fixture
async def env(infra: Settings) -> AsyncIterator[tuple[Settings, asyncpg.Connection]]:
    """Scratch topics and database; settings of a writer with 2 attempts for such errors."""
    run = uuid.uuid4().hex[:8]
    async with scratch_database(infra, prefix="tp_dberr") as dsn:
        settings = infra.model_copy(
            update={
                "database_url": infra.database_url.__class__(dsn),
                "topic_prefix": f"dberr{run}.",
                "consumer_group_prefix": f"dberr{run}-",
                "writer_db_error_attempts": 2,
            }
        )
        names = [settings.topic(t) for t in (VALIDATED_BATCHES, FAILURES, PROGRESS)]
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        conn = await asyncpg.connect(dsn)
        try:
            await admin.create_topics([NewTopic(n, 1, 1) for n in names])
            await migrate(conn, storage_mode())
            await conn.execute(refuse_inserts_sql("GBPJPY"))
            yield settings, conn
        finally:
            await conn.close()
            try:
                await admin.delete_topics(names)
            finally:
                await admin.close()


async def produce(settings: Settings, batches: list[TickBatch]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for b in batches:
            await producer.send_and_wait(
                settings.topic(VALIDATED_BATCHES), encode_batch(b), key=b.meta.unit.key.encode()
            )
    finally:
        await producer.stop()


async def read_all(settings: Settings, topic: str) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(settings.topic(topic), 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        out: list[Any] = []
        while await consumer.position(tp) < end:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                out += batch
        return out
    finally:
        await consumer.stop()


async def committed(settings: Settings, group: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return next((m.offset for tp, m in offsets.items() if tp.topic == topic), -1)


async def run_until(runner: StageRunner, cond: Callable[[], Awaitable[bool]], what: str) -> None:
    task = asyncio.create_task(runner.run())
    try:
        deadline = time.monotonic() + 60
        while not await cond():
            if task.done():
                task.result()
                raise AssertionError("the runner stopped by itself")
            assert time.monotonic() < deadline, f"timed out waiting until {what}"
            await asyncio.sleep(0.2)
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)


def persistent_errors() -> float:
    return (
        REGISTRY.get_sample_value(
            "tickpipe_writer_db_errors_total",
            {"class": "persistent", "error": "ProgramLimitExceededError"},
        )
        or 0.0
    )


async def test_a_unit_the_database_keeps_refusing_goes_to_failures_and_the_ledger(
    env: tuple[Settings, asyncpg.Connection],
) -> None:
    settings, conn = env
    good = hour_batch("EURUSD", START, 50, seed=1)
    bad = hour_batch("EURUSD", START + HOUR_MS, 40, seed=2)
    bad = TickBatch(replace(bad.meta, unit=replace(bad.meta.unit, instrument="GBPJPY")), bad.ticks)
    await produce(settings, [good, bad])
    errors_before = persistent_errors()

    failures = FailureRecords(settings, "writer")
    runner = StageRunner(
        settings, failures.stage, VALIDATED_BATCHES, Writer(settings, failures.record), Health(),
        policy=BatchPolicy(max_records=10, max_wait_s=0.2), failures=failures,
    )  # fmt: skip
    topic = settings.topic(VALIDATED_BATCHES)
    group = settings.group("writer")

    async def offsets_committed() -> bool:
        return await committed(settings, group, topic) == 2

    await run_until(runner, offsets_committed, "the writer committed both records")

    # The good unit is stored; the refused one is a failure record with the reason.
    assert await conn.fetchval("SELECT count(*) FROM ticks WHERE instrument = 'EURUSD'") == 50
    assert await conn.fetchval("SELECT count(*) FROM ticks WHERE instrument = 'GBPJPY'") == 0
    failures = [json.loads(r.value) for r in await read_all(settings, FAILURES)]
    assert len(failures) == 1, failures
    (f,) = failures
    assert f["stage"] == "writer" and f["error_class"] == "PersistentDatabaseError"
    assert "row limit reached for GBPJPY" in f["reason"]
    # Two attempts of the batch, then the record alone once more (its attempts were spent).
    assert re.search(r"gave up after [23] attempts", f["reason"]), f["reason"]
    assert f["unit_key"] == bad.meta.unit.key
    assert persistent_errors() - errors_before >= 2

    # The writer's failure-ledger runner turns it into the unit's `failed` ledger row.
    ledger = StageRunner(
        settings, FAILURES_STAGE, FAILURES, FailureLedger(settings), Health(),
        policy=BatchPolicy(max_records=10, max_wait_s=0.2),
    )  # fmt: skip

    async def failed_in_ledger() -> bool:
        state = await conn.fetchval("SELECT state FROM ingest_log WHERE instrument = 'GBPJPY'")
        return bool(state == "failed")

    await run_until(ledger, failed_in_ledger, "the ledger says failed")
    row = await conn.fetchrow(
        "SELECT failure_stage, failure_reason FROM ingest_log WHERE instrument = 'GBPJPY'"
    )
    assert row["failure_stage"] == "writer"
    assert "gave up after" in row["failure_reason"]
    assert (
        await conn.fetchval("SELECT state FROM ingest_log WHERE instrument = 'EURUSD'") == "stored"
    )
