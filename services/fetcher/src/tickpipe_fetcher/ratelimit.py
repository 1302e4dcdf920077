"""Politeness: an adaptive token bucket per source host.

Each host gets a bucket of ``burst`` tokens refilled at ``rate`` tokens per second; every
request takes one token first. The bucket adapts to what the host says:

* a **429 or 503** halves the rate (at most once per :data:`DECREASE_GUARD_S`, so the answers of
  requests that were already in flight count once), down to ``rate / 32`` at the lowest;
* a ``Retry-After`` on such an answer also **pauses** the host until then (capped at
  :data:`MAX_PAUSE_S`): no token is handed out and none accrues while paused, and the bucket
  resumes with at most one token, so the host sees one request, then the (halved) rate;
* only a **throttling storm** does either: when at least :data:`THROTTLE_SHARE` ×
  :data:`THROTTLE_WINDOW` of the host's last :data:`THROTTLE_WINDOW` answers were 429/503, or
  the source said "rate limit" in so many words (``force``). A stray one (a flaky proxy, a
  busy moment) delays only the unit that got it (its retry waits at least the ``Retry-After``):
  halving the whole host's rate and pausing it for every stray 429 made a source with a few
  percent of such answers many times slower than a clean one;
* **recovery** is additive and slow: the rate climbs linearly by the configured rate every
  ``recovery_s`` seconds (after one halving, back to the configured rate in ``recovery_s / 2``).

Waiters are served first come, first served (an :class:`asyncio.Lock` is fair), so a long queue
of units cannot starve one of them. Time is injectable (``monotonic``, ``sleep``): the unit tests
run on a fake clock and never really sleep.

Why not ``aiolimiter``: its leaky bucket is fine, but the rate is fixed at construction (changing
it means touching private attributes), it has no notion of a pause, and it reads the event
loop's clock, so tests would have to sleep for real. The bucket is ~30 lines; the adaptive part
is ours anyway, and the workspace lock file stays untouched.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

#: A second 429/503 within this many seconds of a halving does not halve again.
DECREASE_GUARD_S = 1.0
#: The adaptive rate never falls below the configured rate divided by this.
MIN_RATE_DIVISOR = 32.0
#: Longest pause a ``Retry-After`` can impose on a host.
MAX_PAUSE_S = 600.0
#: Recent answers of a host considered to tell a throttling storm from a stray 429/503.
THROTTLE_WINDOW = 20
#: Share of those answers being 429/503 from which the host is slowed down and paused.
THROTTLE_SHARE = 0.5
_EPS = 1e-9

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


def host_of(url: str) -> str:
    """The rate-limited unit: ``host[:port]`` of ``url`` (lower case), without any
    ``user:password@`` (it becomes a metric label and appears in logs and failure reasons)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host


class AdaptiveTokenBucket:
    """A token bucket whose rate halves on throttling answers and recovers linearly.

    ``rate`` ≤ 0 means unlimited: :meth:`acquire` never waits (a ``Retry-After`` pause still
    applies: the host asked for it).
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        recovery_s: float = 60.0,
        *,
        monotonic: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.configured_rate = rate
        self.rate = rate
        self.burst = max(1.0, burst)
        self.recovery_s = recovery_s
        self.tokens = self.burst
        self.paused_until = -math.inf
        self._monotonic = monotonic
        self._sleep = sleep
        self._updated = monotonic()
        self._last_decrease = -math.inf
        self._lock = asyncio.Lock()
        self._answers: deque[bool] = deque(maxlen=THROTTLE_WINDOW)  # True: 429/503

    @property
    def limited(self) -> bool:
        """Whether a rate applies at all."""
        return self.configured_rate > 0

    @property
    def min_rate(self) -> float:
        """The floor of the adaptive rate."""
        return self.configured_rate / MIN_RATE_DIVISOR

    def _advance(self, now: float) -> None:
        """Accrue tokens and recover the rate for the unpaused time since the last update."""
        start = max(self._updated, self.paused_until)
        if now > start and self.limited:
            dt = now - start
            # Tokens at the rate before recovery: conservative, never more than allowed.
            self.tokens = min(self.burst, self.tokens + dt * self.rate)
            if self.rate < self.configured_rate:
                step = self.configured_rate / self.recovery_s * dt
                self.rate = min(self.configured_rate, self.rate + step)
        self._updated = max(self._updated, now)

    async def acquire(self) -> float:
        """Wait for a token (and for any pause to end); returns the seconds waited."""
        start = self._monotonic()
        async with self._lock:
            while True:
                now = self._monotonic()
                self._advance(now)
                if now < self.paused_until:
                    await self._sleep(self.paused_until - now)
                    continue
                if not self.limited:
                    break
                if self.tokens >= 1.0 - _EPS:
                    self.tokens = max(0.0, self.tokens - 1.0)
                    break
                await self._sleep((1.0 - self.tokens) / self.rate)
        return self._monotonic() - start

    def answered(self) -> None:
        """The host answered something else than 429/503 (for telling storms from strays)."""
        self._answers.append(False)

    def storm(self) -> bool:
        """Whether the recent answers are throttling often enough to slow the host down."""
        # Counted against the whole window even before it is full: a few answers at the start
        # are too few to tell (one stray 429 of the first two is not half of the traffic).
        return sum(self._answers) >= THROTTLE_SHARE * THROTTLE_WINDOW

    def throttled(self, retry_after: float | None = None, *, force: bool = False) -> None:
        """The host answered 429 or 503: in a storm (:meth:`storm`), or with ``force`` (an
        explicit "rate limit" message of the source), halve the rate and pause for
        ``retry_after`` seconds; a stray 429/503 changes nothing for the host."""
        self._answers.append(True)
        if not (force or self.storm()):
            return
        now = self._monotonic()
        self._advance(now)
        if self.limited and now - self._last_decrease >= DECREASE_GUARD_S:
            self.rate = max(self.min_rate, self.rate / 2.0)
            self._last_decrease = now
        if retry_after is not None and retry_after > 0:
            until = now + min(retry_after, MAX_PAUSE_S)
            if until > self.paused_until:
                self.paused_until = until
                self.tokens = min(self.tokens, 1.0)

    def paused_for(self) -> float:
        """Seconds until the current pause ends (0 when not paused)."""
        return max(0.0, self.paused_until - self._monotonic())


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Per-replica bucket parameters derived from the fleet-wide totals."""

    rate: float
    burst: float
    recovery_s: float

    @classmethod
    def per_replica(
        cls, total_rate: float, total_burst: float, replicas: int, recovery_s: float
    ) -> RateLimitConfig:
        """Each of ``replicas`` fetchers gets an equal share of the total rate and burst."""
        replicas = max(1, replicas)
        return cls(total_rate / replicas, max(1.0, total_burst / replicas), recovery_s)


class HostLimiters:
    """One :class:`AdaptiveTokenBucket` per host, created on first use."""

    def __init__(
        self,
        config: RateLimitConfig,
        *,
        monotonic: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config = config
        self._monotonic = monotonic
        self._sleep = sleep
        self._buckets: dict[str, AdaptiveTokenBucket] = {}

    def for_host(self, host: str) -> AdaptiveTokenBucket:
        """The host's bucket."""
        bucket = self._buckets.get(host)
        if bucket is None:
            c = self.config
            bucket = AdaptiveTokenBucket(
                c.rate, c.burst, c.recovery_s, monotonic=self._monotonic, sleep=self._sleep
            )
            self._buckets[host] = bucket
        return bucket
