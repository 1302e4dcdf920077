"""Reading a topic from a point in time without a consumer group, as the readers of request
events and cancellations do (the API, the CLI, the fetcher's cancellation registry)."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.security import kafka_client_kwargs

log = structlog.get_logger()


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


class TopicFollower:
    """Runs :meth:`follow` in a background task from :meth:`start` to :meth:`stop`, again after
    a Kafka or network error, with backoff from 1 s to 30 s. Subclasses implement
    :meth:`follow` (typically a :func:`groupless_consumer` read to the end and beyond);
    ``name`` names the task and the log line."""

    name = "topic"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start following. Raises :class:`RuntimeError` outside a running event loop."""
        loop = asyncio.get_running_loop()
        if self._task is None:
            self._task = loop.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        delay = 1.0
        while True:
            try:
                await self.follow()
            except (KafkaError, OSError) as e:
                log.warning(f"{self.name} unreachable; retrying", error=str(e), in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def follow(self) -> None:
        """Read the topic until cancelled; Kafka errors propagate (and are retried)."""
        raise NotImplementedError
