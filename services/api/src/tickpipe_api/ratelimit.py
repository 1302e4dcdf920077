"""Per-key rate limits: a token bucket per key, in process.

A key may make ``rate`` requests per second on average and ``burst`` (= rate × the configured
burst seconds) at once. Every replica keeps its own buckets and allows ``rate / replicas`` (the
``TICKPIPE_API_REPLICAS`` setting): behind a load balancer that spreads requests evenly this adds
up to the key's limit; an uneven spread lets a key get somewhat less (docs/api.md).

Answers carry the IETF draft headers: ``RateLimit-Limit`` (the burst), ``RateLimit-Remaining``
(whole tokens left), ``RateLimit-Reset`` (seconds until the bucket is full again) and
``RateLimit-Policy`` (``<burst>;w=<seconds to refill it>``); a refused request also gets
``Retry-After`` (seconds until one token is back).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TTLCache


@dataclass(slots=True)
class Bucket:
    """Tokens of one key: ``capacity`` at most, refilled at ``rate`` per second."""

    rate: float
    capacity: float
    tokens: float
    at: float

    def take(self, now: float) -> bool:
        """Refill to ``now`` and take one token; False when there is none."""
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one request against its key's bucket, and the headers that say so."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int
    window_s: int

    def headers(self) -> dict[str, str]:
        """``RateLimit-*`` headers (and ``Retry-After`` when refused)."""
        h = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
            "RateLimit-Policy": f"{self.limit};w={self.window_s}",
        }
        if not self.allowed:
            h["Retry-After"] = str(self.retry_after_s)
        return h


class RateLimiter:
    """Token buckets by key id; idle buckets are forgotten after an hour (bounded memory)."""

    def __init__(
        self,
        burst_s: float,
        replicas: int = 1,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.burst_s = burst_s
        self.replicas = replicas
        self.clock = clock
        self._buckets: TTLCache[str, Bucket] = TTLCache(max_keys, 3600.0, timer=clock)

    def check(self, key_id: str, rate: float) -> Decision:
        """Take a token of ``key_id``'s bucket (``rate`` requests/s over all replicas)."""
        per_replica = rate / self.replicas
        capacity = max(1.0, per_replica * self.burst_s)
        now = self.clock()
        b = self._buckets.get(key_id)
        if b is None or b.rate != per_replica or b.capacity != capacity:
            b = Bucket(per_replica, capacity, capacity, now)
        allowed = b.take(now)
        self._buckets[key_id] = b
        missing = capacity - b.tokens
        return Decision(
            allowed=allowed,
            limit=int(capacity),
            remaining=int(b.tokens),
            reset_s=math.ceil(missing / per_replica),
            retry_after_s=max(1, math.ceil((1.0 - b.tokens) / per_replica)),
            window_s=max(1, math.ceil(capacity / per_replica)),
        )
