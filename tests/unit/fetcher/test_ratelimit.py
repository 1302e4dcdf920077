"""``tickpipe_fetcher.ratelimit``: the adaptive token bucket on a fake clock (no real sleeping)."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from tickpipe_fetcher.ratelimit import (
    DECREASE_GUARD_S,
    MAX_PAUSE_S,
    THROTTLE_WINDOW,
    AdaptiveTokenBucket,
    HostLimiters,
    RateLimitConfig,
    host_of,
)


class FakeTime:
    """A monotonic clock that only ``sleep`` moves."""

    def __init__(self) -> None:
        self.t = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)


def bucket(t: FakeTime, rate: float = 5.0, burst: float = 2.0, recovery_s: float = 60.0):  # type: ignore[no-untyped-def]
    return AdaptiveTokenBucket(rate, burst, recovery_s, monotonic=t, sleep=t.sleep)


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """Most events in any half-open window ``[s, s + window)``."""
    return max(sum(1 for u in times if s <= u < s + window - 1e-9) for s in times)


async def test_burst_then_steady_rate() -> None:
    t = FakeTime()
    b = bucket(t, rate=5.0, burst=2.0)
    times = []
    for _ in range(12):
        await b.acquire()
        times.append(t())
    assert times[:2] == [100.0, 100.0]  # the burst goes at once
    gaps = [round(b - a, 9) for a, b in itertools.pairwise(times[1:])]
    assert all(g == pytest.approx(0.2) for g in gaps)
    assert max_in_window(times) <= 5 + 2


async def test_concurrent_waiters_are_served_in_order_at_the_rate() -> None:
    t = FakeTime()
    b = bucket(t, rate=10.0, burst=1.0)
    order: list[int] = []
    stamps: list[float] = []

    async def one(i: int) -> None:
        await b.acquire()
        order.append(i)
        stamps.append(t())

    await asyncio.gather(*(one(i) for i in range(20)))
    assert order == list(range(20))
    assert max_in_window(stamps) <= 10 + 1
    assert stamps[-1] - stamps[0] == pytest.approx(1.9)


async def test_acquire_reports_its_wait() -> None:
    t = FakeTime()
    b = bucket(t, rate=2.0, burst=1.0)
    assert await b.acquire() == 0.0
    assert await b.acquire() == pytest.approx(0.5)


async def test_unlimited_never_waits() -> None:
    t = FakeTime()
    b = bucket(t, rate=0.0, burst=1.0)
    for _ in range(1000):
        await b.acquire()
    assert t.sleeps == []
    b.throttled(None, force=True)
    assert b.rate == 0.0  # nothing to halve


async def test_throttle_halves_once_per_guard_and_has_a_floor() -> None:
    t = FakeTime()
    b = bucket(t, rate=8.0)
    b.throttled(None, force=True)
    b.throttled(None, force=True)  # in-flight answers of the same burst count once
    assert b.rate == 4.0
    for _ in range(20):
        t.t += DECREASE_GUARD_S
        b._updated = t.t  # no recovery in between, to see the floor
        b.throttled(None, force=True)
    assert b.rate == pytest.approx(8.0 / 32)


async def test_retry_after_pauses_the_host_then_one_request_then_the_rate() -> None:
    t = FakeTime()
    b = bucket(t, rate=4.0, burst=4.0)
    await b.acquire()
    b.throttled(retry_after=10.0, force=True)
    assert b.paused_for() == pytest.approx(10.0)
    times = []
    for _ in range(3):
        await b.acquire()
        times.append(t() - 100.0)
    # Paused 10 s; then one token (no burst of 3 left over), then the halved rate (2/s).
    assert times == pytest.approx([10.0, 10.5, 11.0], abs=0.02)


async def test_retry_after_is_capped() -> None:
    t = FakeTime()
    b = bucket(t)
    b.throttled(retry_after=86400.0, force=True)
    assert b.paused_for() == MAX_PAUSE_S


async def test_pause_applies_even_unlimited() -> None:
    t = FakeTime()
    b = bucket(t, rate=0.0)
    b.throttled(retry_after=3.0, force=True)
    assert await b.acquire() == pytest.approx(3.0)


async def test_recovery_is_linear_and_slow() -> None:
    t = FakeTime()
    b = bucket(t, rate=10.0, recovery_s=60.0)
    b.throttled(None, force=True)
    assert b.rate == 5.0
    t.t += 15.0  # climbs 10 / 60 per second: +2.5
    b._advance(t())
    assert b.rate == pytest.approx(7.5)
    t.t += 100.0
    b._advance(t())
    assert b.rate == 10.0  # never above the configured rate


async def test_no_recovery_while_paused() -> None:
    t = FakeTime()
    b = bucket(t, rate=10.0, recovery_s=60.0)
    b.throttled(retry_after=30.0, force=True)
    t.t += 30.0
    b._advance(t())
    assert b.rate == 5.0


def test_per_replica_share() -> None:
    c = RateLimitConfig.per_replica(12.0, 6.0, 3, 60.0)
    assert (c.rate, c.burst, c.recovery_s) == (4.0, 2.0, 60.0)
    assert RateLimitConfig.per_replica(10.0, 2.0, 8, 60.0).burst == 1.0  # at least one token


def test_one_bucket_per_host() -> None:
    limiters = HostLimiters(RateLimitConfig(5.0, 2.0, 60.0))
    a = limiters.for_host("a.test")
    assert limiters.for_host("a.test") is a
    assert limiters.for_host("b.test") is not a
    assert (a.rate, a.burst) == (5.0, 2.0)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        (
            "https://datafeed.dukascopy.com/datafeed/EURUSD/2019/01/04/05h_ticks.bi5",
            "datafeed.dukascopy.com",
        ),
        ("http://127.0.0.1:8080/v1/ticks/EUR-USD/2019/2/4/5", "127.0.0.1:8080"),
        ("HTTPS://Example.TEST/x", "example.test"),
    ],
)
def test_host_of(url: str, host: str) -> None:
    assert host_of(url) == host


async def test_stray_throttles_leave_the_host_alone_a_storm_does_not() -> None:
    t = FakeTime()
    b = AdaptiveTokenBucket(10.0, 5.0, 60.0, monotonic=t, sleep=t.sleep)
    for i in range(200):  # 1 in 10 answers is a 429: a flaky proxy, not a rate limit
        if i % 10 == 0:
            b.throttled(retry_after=5.0)
        else:
            b.answered()
    assert b.rate == 10.0 and b.paused_for() == 0.0
    for _ in range(THROTTLE_WINDOW):  # now every answer is a 429
        b.throttled(retry_after=5.0)
    assert b.rate == 5.0 and b.paused_for() == pytest.approx(5.0)
