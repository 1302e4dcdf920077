"""Publishing fetch requests on Kafka, exactly as ``tickpipe request`` does: validated by
:func:`tickpipe_shared.wire.requests.parse_request`, keyed by instrument, ``request_id`` header,
one long-lived idempotent producer (started on first use)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.producer import make_producer, produce_all
from tickpipe_shared.kafka.records import OutRecord
from tickpipe_shared.kafka.topics import FETCH_REQUESTS
from tickpipe_shared.wire.headers import encode_headers
from tickpipe_shared.wire.requests import FetchRequest


class Publisher:
    """Publishes :class:`FetchRequest` records on ``fetch-requests``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = make_producer(self.settings, client_id="tickpipe-api")
                await producer.start()
                self._producer = producer
            return self._producer

    async def publish(self, request: FetchRequest) -> None:
        """Publish ``request`` and wait for the broker's acknowledgement. Raises
        :class:`aiokafka.errors.KafkaError` (the producer is dropped and rebuilt next time)."""
        producer = await self._started()
        record = OutRecord(
            self.settings.topic(FETCH_REQUESTS),
            request.instrument.encode(),
            request.to_json(),
            encode_headers({"request_id": request.request_id}),
        )
        try:
            await asyncio.wait_for(produce_all(producer, [record]), timeout=30)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop the producer (if started)."""
        async with self._lock:
            if self._producer is not None:
                producer, self._producer = self._producer, None
                await producer.stop()
