"""Request progress for ``GET /v1/requests/{id}``: every replica follows the tracker's
``request-events`` topic (all partitions, no consumer group, from
``TICKPIPE_API_REQUESTS_LOOKBACK_S`` back) and keeps the latest state of each request,
bounded (the least recently updated are forgotten).

An event is folded by :func:`tickpipe_shared.wire.request_events.fold`, as ``tickpipe requests
show`` does (docs/topics/request-events.md).
"""

from __future__ import annotations

import json
import time
from typing import Any

import structlog
from cachetools import LRUCache
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.follow import TopicFollower, groupless_consumer, seek_to_time
from tickpipe_shared.kafka.topics import REQUEST_EVENTS
from tickpipe_shared.wire.request_events import fold

log = structlog.get_logger()


class RequestEvents(TopicFollower):
    """Follows ``request-events``; :meth:`get` answers from memory."""

    name = "request-events"

    def __init__(self, settings: Settings, lookback_s: float, max_requests: int = 100_000) -> None:
        super().__init__()
        self.settings = settings
        self.lookback_s = lookback_s
        self.states: LRUCache[str, dict[str, Any]] = LRUCache(max_requests)
        self.caught_up = False

    def get(self, request_id: str) -> dict[str, Any] | None:
        """The latest state of ``request_id`` seen, or ``None``."""
        return self.states.get(request_id)

    async def follow(self) -> None:
        consumer = groupless_consumer(self.settings, REQUEST_EVENTS)
        await consumer.start()
        try:
            parts = list(consumer.assignment())
            ends = await seek_to_time(consumer, int((time.time() - self.lookback_s) * 1000))
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for r in records:
                        self._apply(r.value)
                if not self.caught_up:
                    positions = [await consumer.position(tp) for tp in parts]
                    pairs = zip(positions, parts, strict=True)
                    self.caught_up = all(p >= ends[tp] for p, tp in pairs)
        finally:
            await consumer.stop()

    def _apply(self, value: bytes | None) -> None:
        try:
            event = json.loads(value or b"")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return
        if not isinstance(event, dict) or not isinstance(event.get("request_id"), str):
            return
        rid = event["request_id"]
        folded = fold(self.states.get(rid), event)
        if folded is not None:
            self.states[rid] = folded
