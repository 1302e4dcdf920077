"""Which requests are cancelled: the fetcher's view of ``request-cancellations``.

A :class:`CancellationRegistry` follows the topic in the background (every partition, no
consumer group, from :data:`LOOKBACK_S` back, reconnecting while Kafka is unreachable) and
answers :meth:`~CancellationRegistry.is_cancelled` from memory. The planner asks it once per
request, the downloader once per unit, just before downloading (``docs/topics/
request-cancellations.md``).
"""

from __future__ import annotations

import contextlib
import time

import structlog
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.follow import TopicFollower, groupless_consumer, seek_to_time
from tickpipe_shared.kafka.topics import REQUEST_CANCELLATIONS
from tickpipe_shared.wire.request_events import decode_cancellation

log = structlog.get_logger()

#: Cancellations older than this are not read (the topic's retention: units older than it are
#: gone from ``fetch-units`` too).
LOOKBACK_S = 7 * 86400.0
#: Most request ids remembered; the oldest are forgotten first.
MAX_REQUESTS = 100_000


class CancellationRegistry(TopicFollower):
    """Cancelled request ids, followed from Kafka once :meth:`start` is called (the first
    :meth:`is_cancelled` inside a running event loop starts it too)."""

    name = "request-cancellations"

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self._cancelled: dict[str, None] = {}

    def add(self, request_id: str) -> None:
        """Remember ``request_id`` as cancelled (bounded: the oldest are forgotten)."""
        self._cancelled[request_id] = None
        while len(self._cancelled) > MAX_REQUESTS:
            del self._cancelled[next(iter(self._cancelled))]

    def is_cancelled(self, request_id: str) -> bool:
        """Whether a cancellation of ``request_id`` has been seen."""
        if self._task is None:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to follow yet
                self.start()
        return request_id in self._cancelled

    async def follow(self) -> None:
        consumer = groupless_consumer(self.settings, REQUEST_CANCELLATIONS)
        await consumer.start()
        try:
            await seek_to_time(consumer, int((time.time() - LOOKBACK_S) * 1000))
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for r in records:
                        rid = decode_cancellation(r.value)
                        if rid is not None:
                            log.info("request cancelled", request_id=rid)
                            self.add(rid)
        finally:
            await consumer.stop()
