"""``tickpipe_fetcher.breaker``: the circuit breaker state machine on a fake clock."""

from __future__ import annotations

import asyncio

import pytest
from tickpipe_fetcher.breaker import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    HostBreakers,
    Permit,
)

WALL = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class FakeTime:
    def __init__(self) -> None:
        self.t = 50.0

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)


def make(t: FakeTime, **config: float) -> tuple[CircuitBreaker, list[BreakerState]]:
    changes: list[BreakerState] = []
    cfg = BreakerConfig(**{"failures": 3, "window": 10, "cooldown_s": 30.0, **config})  # type: ignore[arg-type]
    b = CircuitBreaker(
        "h.test", cfg, monotonic=t, wall=lambda: WALL, sleep=t.sleep, on_change=changes.append
    )
    return b, changes


def fail(b: CircuitBreaker, n: int = 1, error: str = "HTTP 500 from x") -> None:
    for _ in range(n):
        permit = b.try_acquire()
        assert permit is not None
        b.failure(permit, error)


def succeed(b: CircuitBreaker, n: int = 1) -> None:
    for _ in range(n):
        permit = b.try_acquire()
        assert permit is not None
        b.success(permit)


def test_opens_after_consecutive_failures() -> None:
    t = FakeTime()
    b, changes = make(t)
    fail(b, 2)
    succeed(b)  # resets the consecutive count
    fail(b, 2)
    assert b.state is BreakerState.CLOSED
    fail(b)
    assert b.state is BreakerState.OPEN
    assert changes == [BreakerState.OPEN]
    assert b.try_acquire() is None and not b.ready()


def test_opens_on_failure_ratio_over_the_window() -> None:
    t = FakeTime()
    b, _ = make(t, failures=100, window=10, failure_ratio=0.5)
    for _ in range(4):
        succeed(b)
        fail(b)
    assert b.state is BreakerState.CLOSED  # 8 results: the window is not full yet
    succeed(b)
    fail(b)
    assert b.state is BreakerState.OPEN  # 5 of the last 10 failed


def test_low_failure_ratio_stays_closed() -> None:
    t = FakeTime()
    b, _ = make(t, failures=100, window=10, failure_ratio=0.5)
    for _ in range(50):
        fail(b)
        succeed(b, 2)
    assert b.state is BreakerState.CLOSED


def test_half_open_lets_one_probe_and_success_closes() -> None:
    t = FakeTime()
    b, changes = make(t)
    fail(b, 3)
    t.t += 29.9
    assert b.state is BreakerState.OPEN
    t.t += 0.1
    assert b.state is BreakerState.HALF_OPEN
    probe = b.try_acquire()
    assert probe is not None and probe.probe
    assert b.try_acquire() is None and not b.ready()  # only one probe
    b.success(probe)
    assert b.state is BreakerState.CLOSED
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
    fail(b, 2)
    assert b.state is BreakerState.CLOSED  # history was cleared


def test_failed_probe_reopens_for_another_cooldown() -> None:
    t = FakeTime()
    b, changes = make(t)
    fail(b, 3)
    t.t += 30
    probe = b.try_acquire()
    assert probe is not None
    b.failure(probe, "HTTP 503 from y")
    assert b.state is BreakerState.OPEN
    t.t += 29
    assert b.state is BreakerState.OPEN
    t.t += 1
    assert b.state is BreakerState.HALF_OPEN
    assert b.opened == 2
    assert changes.count(BreakerState.OPEN) == 2


def test_released_probe_hands_over() -> None:
    t = FakeTime()
    b, _ = make(t)
    fail(b, 3)
    t.t += 30
    probe = b.try_acquire()
    assert probe is not None
    b.release(probe)  # e.g. a 429: no verdict
    assert b.state is BreakerState.HALF_OPEN and b.ready()
    assert b.try_acquire() is not None


def test_stale_results_are_ignored() -> None:
    t = FakeTime()
    b, _ = make(t)
    early = [b.try_acquire() for _ in range(5)]
    fail(b, 3)
    assert b.state is BreakerState.OPEN
    for p in early:
        assert isinstance(p, Permit)
        b.success(p)  # answers of requests sent before it opened
    assert b.state is BreakerState.OPEN
    t.t += 30
    probe = b.try_acquire()
    assert probe is not None
    b.failure(early[0], "late")  # type: ignore[arg-type]
    assert b.state is BreakerState.HALF_OPEN  # only the probe decides


async def test_wait_ready_waits_for_the_cooldown() -> None:
    t = FakeTime()
    b, _ = make(t)
    fail(b, 3)
    await b.wait_ready(deadline=t() + 100)
    assert t() == pytest.approx(80.0) and b.state is BreakerState.HALF_OPEN


async def test_wait_ready_raises_at_the_deadline_with_a_clear_reason() -> None:
    t = FakeTime()
    b, _ = make(t)
    fail(b, 3, error="HTTP 503 from http://h.test/x")
    with pytest.raises(CircuitOpenError) as info:
        await b.wait_ready(deadline=t() + 10)
    assert t() == pytest.approx(60.0)
    assert str(info.value) == (
        "circuit open for host h.test since 2027-01-15T08:00:00Z; "
        "last error: HTTP 503 from http://h.test/x"
    )


async def test_waiters_follow_the_probe() -> None:
    t = FakeTime()
    b, _ = make(t)
    fail(b, 3)
    t.t += 30
    probe = b.try_acquire()
    assert probe is not None
    waiter = asyncio.create_task(b.wait_ready(deadline=t() + 1000))
    await asyncio.sleep(0)
    assert not waiter.done()
    b.success(probe)
    await asyncio.wait_for(waiter, 1)
    assert b.state is BreakerState.CLOSED


def test_since_is_the_start_of_the_outage() -> None:
    t = FakeTime()
    wall = [WALL]
    b = CircuitBreaker("h.test", BreakerConfig(failures=1, cooldown_s=5), monotonic=t,
                       wall=lambda: wall[0])  # fmt: skip
    fail(b)
    wall[0] += 3600
    t.t += 5
    probe = b.try_acquire()
    assert probe is not None
    b.failure(probe, "again")
    assert "since 2027-01-15T08:00:00Z" in b.describe()


def test_host_breakers_one_per_host_and_report_changes() -> None:
    seen: list[tuple[str, BreakerState]] = []
    hb = HostBreakers(BreakerConfig(failures=1), on_change=lambda h, s: seen.append((h, s)))
    a = hb.for_host("a.test")
    assert hb.for_host("a.test") is a and hb.for_host("b.test") is not a
    fail(a)
    assert seen == [("a.test", BreakerState.OPEN)]
    assert {x.host for x in hb.all()} == {"a.test", "b.test"}
