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
