"""The Docker-free local stack: Kafka and PostgreSQL answer, topics are right, up is idempotent."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from tickpipe_dev.stack import api, kafka, postgres
from tickpipe_dev.stack.paths import StackPaths
from tickpipe_dev.stack.processes import Reporter
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.topics import RAW_PAYLOADS, TOPICS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def test_kafka_round_trip(infra: Settings) -> None:
    topic = f"scratch.stack-{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            meta = await producer.send_and_wait(topic, b"payload", key=b"k1")
        finally:
            await producer.stop()
        assert meta.offset == 0

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=infra.kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            batches = await consumer.getmany(timeout_ms=15_000)
            records = [r for rs in batches.values() for r in rs]
        finally:
            await consumer.stop()
        assert [(r.key, r.value) for r in records] == [(b"k1", b"payload")]
    finally:
        await admin.delete_topics([topic])
        await admin.close()


async def test_tickpipe_topics_exist_with_configured_partitions(infra: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        names = [infra.topic(t.name) for t in TOPICS]
        described = {d["topic"]: d for d in await admin.describe_topics(names)}
        for name in names:
            assert described[name]["error_code"] == 0, name
            assert len(described[name]["partitions"]) == infra.topic_partitions, name

        raw = infra.topic(RAW_PAYLOADS)
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, raw)])
        entries = {
            entry[0]: entry[1]
            for response in responses
            for resource in response.resources
            for entry in resource[4]
        }
        assert entries["retention.ms"] == "-1"
        assert entries["max.message.bytes"] == str(8 * 1024 * 1024)
    finally:
        await admin.close()


async def test_postgres_accepts_the_tickpipe_dsn(infra: Settings) -> None:
    conn = await asyncpg.connect(infra.database_url.get_secret_value(), timeout=10)
    try:
        assert await conn.fetchval("select 1") == 1
        assert await conn.fetchval("select current_user") == postgres.ROLE
        assert await conn.fetchval("select current_database()") == postgres.DATABASE
    finally:
        await conn.close()


def test_up_twice_is_harmless(infra: Settings) -> None:
    before = {row.name: row for row in api.status()}
    assert before[kafka.NAME].running and before[kafka.NAME].healthy
    assert before[postgres.NAME].running and before[postgres.NAME].healthy

    api.up(infra_only=True, reporter=Reporter(quiet=True))

    after = {row.name: row for row in api.status()}
    for name in (kafka.NAME, postgres.NAME):
        assert after[name].pid == before[name].pid, name
        assert after[name].healthy, name


def test_the_stack_runs_timescaledb_built_by_bootstrap(infra: Settings) -> None:
    """bin/bootstrap built TimescaleDB into .local/pgserver; the stack runs that server tree,
    preloads the extension, says so in `status`, and telemetry is compiled out."""
    paths = StackPaths.discover()
    bin_dir = postgres.stack_bin_dir(paths)
    assert paths.pg_server_dir in bin_dir.resolve().parents or (
        paths.pg_server_dir.resolve() in bin_dir.resolve().parents
    ), f"the stack runs {bin_dir}, not the bootstrap's TimescaleDB tree"
    row = {r.name: r for r in api.status()}[postgres.NAME]
    assert row.detail.startswith("TimescaleDB 2.28.3 on PostgreSQL 15"), row.detail

    async def check() -> None:
        conn = await asyncpg.connect(infra.database_url.get_secret_value(), timeout=10)
        try:
            assert (
                await conn.fetchval(
                    "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
                )
                == "2.28.3"
            )
            jobs = await conn.fetch("SELECT application_name FROM timescaledb_information.jobs")
            assert not [j for j in jobs if "Telemetry" in j["application_name"]]
            with pytest.raises(asyncpg.UndefinedObjectError):
                await conn.fetchval("SHOW timescaledb.telemetry_level")
        finally:
            await conn.close()

    asyncio.run(check())
