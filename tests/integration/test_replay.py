"""Replay against the real Kafka: rewinding a stage's consumer group."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from tickpipe_cli.replay import ReplayError, rewind
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.topics import RAW_PAYLOADS, ensure_topics

pytestmark = pytest.mark.integration


@pytest.fixture
async def settings(infra: Settings) -> Settings:
    run = uuid.uuid4().hex[:8]
    s = infra.model_copy(
        update={
            "topic_prefix": f"replay{run}.",
            "consumer_group_prefix": f"replay{run}-",
            "topic_partitions": 2,
        }
    )
    await ensure_topics(s)
    return s


async def _produce(s: Settings, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap)
    await producer.start()
    try:
        for i in range(n):
            await producer.send_and_wait(s.topic(RAW_PAYLOADS), b"x", key=f"k{i}".encode())
    finally:
        await producer.stop()


async def _consume_all_and_commit(s: Settings) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        s.topic(RAW_PAYLOADS),
        bootstrap_servers=s.kafka_bootstrap,
        group_id=s.group("decoder"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    seen = 0
    while seen < 10:
        for records in (await consumer.getmany(timeout_ms=1000)).values():
            seen += len(records)
    await consumer.commit()
    return consumer


async def _committed(s: Settings) -> dict[int, int | None]:
    c = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, group_id=s.group("decoder"))
    await c.start()
    try:
        return {p: await c.committed(TopicPartition(s.topic(RAW_PAYLOADS), p)) for p in (0, 1)}
    finally:
        await c.stop()


async def test_rewind_to_earliest_and_to_a_time(settings: Settings) -> None:
    await _produce(settings, 10)
    consumer = await _consume_all_and_commit(settings)
    with pytest.raises(ReplayError, match="active member"):
        await rewind(settings, "decoder", None)
    await consumer.stop()
    assert sum(v or 0 for v in (await _committed(settings)).values()) == 10

    moved = await rewind(settings, "decoder", None)
    assert {m.new for m in moved} == {0} and sum(m.old or 0 for m in moved) == 10
    assert await _committed(settings) == {0: 0, 1: 0}

    future = await rewind(settings, "decoder", datetime(2100, 1, 1, tzinfo=UTC))
    assert sum(m.new for m in future) == 10  # nothing after that time: the end


async def test_unknown_stage_is_refused(settings: Settings) -> None:
    with pytest.raises(ReplayError, match="unknown stage 'fetcher'"):
        await rewind(settings, "fetcher", None)


async def test_replay_refuses_a_range_older_than_the_topic_holds(settings: Settings) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
    from tickpipe_shared.kafka.topics import VALIDATED_BATCHES

    topic = settings.topic(VALIDATED_BATCHES)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    old_ms = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    try:
        for i in range(4):
            await producer.send_and_wait(topic, b"x", partition=0, timestamp_ms=old_ms + i * 1000)
    finally:
        await producer.stop()
    # What retention does, on demand: the two oldest records of partition 0 are deleted.
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(2)})
    finally:
        await admin.close()
    since = datetime(2025, 12, 31, tzinfo=UTC)
    with pytest.raises(ReplayError) as info:
        await rewind(settings, "writer", since)
    message = str(info.value)
    assert "cannot replay writer from 2025-12-31T00:00:00Z" in message
    assert "holds records only from 2026-01-01T00:00:02Z" in message
    assert "TICKPIPE_TOPIC_BATCH_RETENTION_MS" in message and "replay the decoder" in message
    # From a time the topic still holds, it goes through.
    moved = await rewind(settings, "writer", datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC))
    assert {m.partition: m.new for m in moved}[0] == 2
