"""Reading a topic from a point in time without a consumer group, as the readers of request
events and cancellations do (the API, the CLI, the fetcher's cancellation registry)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.security import kafka_client_kwargs


def groupless_consumer(settings: Settings, topic: str) -> AIOKafkaConsumer:
    """A consumer of logical ``topic`` without a group id: once started, it is assigned every
    partition; nothing is committed."""
    return AIOKafkaConsumer(
        settings.topic(topic), **kafka_client_kwargs(settings), enable_auto_commit=False
    )


async def seek_to_time(consumer: AIOKafkaConsumer, since_ms: int) -> dict[TopicPartition, int]:
    """Position every assigned partition at its first record at or after ``since_ms`` (the end
    when there is none); the end offsets, read first as concrete numbers so that a record
    produced meanwhile is never skipped (``seek_to_end`` would resolve "the end" later)."""
    parts = list(consumer.assignment())
    ends: dict[TopicPartition, int] = await consumer.end_offsets(parts)
    since = await consumer.offsets_for_times({tp: since_ms for tp in parts})
    for tp in parts:
        found = since.get(tp)
        consumer.seek(tp, found.offset if found is not None else ends[tp])
    return ends
