"""The one way tickpipe produces: idempotent, ``acks=all``, large messages allowed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.records import OutRecord
from tickpipe_shared.kafka.security import kafka_client_kwargs


def make_producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    """A producer for ``settings.kafka_bootstrap`` (with its TLS/SASL settings) that waits for
    all in-sync replicas."""
    return AIOKafkaProducer(
        **kafka_client_kwargs(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_request_size=settings.topic_max_message_bytes,
        request_timeout_ms=30_000,
    )


async def produce_all(producer: AIOKafkaProducer, records: Sequence[OutRecord]) -> None:
    """Send every record and wait until the broker acknowledged all of them.

    Raises :class:`aiokafka.errors.KafkaError` when any record could not be delivered; some
    others may have been written (at-least-once: downstream stages tolerate duplicates).
    """
    futures = [
        await producer.send(r.topic, value=r.value, key=r.key, headers=r.headers) for r in records
    ]
    if futures:
        await asyncio.gather(*futures)
