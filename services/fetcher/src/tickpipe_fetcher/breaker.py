"""A circuit breaker per source host.

States (the value is what ``tickpipe_fetcher_breaker_state`` shows):

* **closed** (0): requests flow. Each result is recorded; ``failures`` consecutive failures, or a
  failure ratio ≥ ``failure_ratio`` over the last ``window`` results (once that many were seen),
  **open** the breaker.
* **open** (2): no request is sent for ``cooldown_s``. Units wait; they do not spend attempts.
* **half-open** (1): after the cool-down, exactly one request (the probe) goes through; the
  others keep waiting. A successful probe **closes** the breaker (history cleared); a failed
  one opens it again for another cool-down.

Results of requests admitted before the breaker opened are ignored when they come back later:
only the probe decides in half-open. What counts as a failure is the caller's decision (the
downloader: network errors, timeouts, 5xx, answers that are not data; not 429, which is the rate
limiter's business, and not permanent answers such as 403/404, which prove the host is up).

A unit waits at most ``max_wait_s`` in total for a host's breaker; then
:class:`CircuitOpenError` ("circuit open for host … since …") fails it, so a dead host ends in
explicit failures rather than a stalled partition.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


class BreakerState(IntEnum):
    """Breaker states; the values are the metric's."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitOpenError(Exception):
    """A unit waited ``max_wait_s`` for an open breaker."""


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Thresholds and times of every host's breaker."""

    failures: int = 5
    failure_ratio: float = 0.5
    window: int = 20
    cooldown_s: float = 30.0
    max_wait_s: float = 300.0


@dataclass(slots=True)
class Permit:
    """Leave to send one request; ``probe`` when it is the half-open probe."""

    probe: bool
    generation: int


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CircuitBreaker:
    """The breaker of one host. ``on_change(state)`` is called on every transition."""

    def __init__(
        self,
        host: str,
        config: BreakerConfig | None = None,
        *,
        monotonic: Clock = time.monotonic,
        wall: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        self.host = host
        self.config = config or BreakerConfig()
        self._monotonic = monotonic
        self._wall = wall
        self._sleep = sleep
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._results: deque[bool] = deque(maxlen=self.config.window)  # True: failure
        self._open_until = 0.0
        self._since_wall: float | None = None  # first opening of the current outage
        self._probe_done: asyncio.Event | None = None  # set when the probe in flight ends
        self._generation = 0  # bumped on every transition: stale results are ignored
        self.last_error = ""
        self.opened = 0  # times it opened (for tests and logs)

    # --- state ----------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose cool-down ended reads half-open)."""
        if self._state is BreakerState.OPEN and self._monotonic() >= self._open_until:
            self._set(BreakerState.HALF_OPEN)
        return self._state

    def _set(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            self._generation += 1
            if self._on_change is not None:
                self._on_change(state)

    def _open(self) -> None:
        self._open_until = self._monotonic() + self.config.cooldown_s
        if self._since_wall is None:
            self._since_wall = self._wall()
        self.opened += 1
        self._set(BreakerState.OPEN)

    def describe(self) -> str:
        """Why units fail while the breaker is open."""
        since = _iso(self._since_wall) if self._since_wall is not None else "?"
        text = f"circuit open for host {self.host} since {since}"
        return f"{text}; last error: {self.last_error}" if self.last_error else text

    # --- admission ------------------------------------------------------------------------

    def ready(self) -> bool:
        """Whether a request could pass now (closed, or half-open with no probe out)."""
        state = self.state
        return state is BreakerState.CLOSED or (
            state is BreakerState.HALF_OPEN and self._probe_done is None
        )

    async def wait_ready(self, deadline: float) -> None:
        """Return once a request could pass; raise :class:`CircuitOpenError` at ``deadline``
        (a :func:`time.monotonic`-style time) if the breaker still blocks then."""
        while not self.ready():
            now = self._monotonic()
            if now >= deadline:
                raise CircuitOpenError(self.describe())
            if self._state is BreakerState.OPEN:
                await self._sleep(min(self._open_until, deadline) - now)
            elif self._probe_done is not None:
                # The probe is bounded by the transport's total timeout.
                await self._probe_done.wait()

    def try_acquire(self) -> Permit | None:
        """A permit when a request may go now (in half-open: the probe), else None."""
        state = self.state
        if state is BreakerState.CLOSED:
            return Permit(probe=False, generation=self._generation)
        if state is BreakerState.HALF_OPEN and self._probe_done is None:
            self._probe_done = asyncio.Event()
            return Permit(probe=True, generation=self._generation)
        return None

    # --- results --------------------------------------------------------------------------

    def _end_probe(self) -> None:
        if self._probe_done is not None:
            self._probe_done.set()
            self._probe_done = None

    def success(self, permit: Permit) -> None:
        """The host answered sanely."""
        if permit.probe:
            self._end_probe()
            self._consecutive = 0
            self._results.clear()
            self._since_wall = None
            self.last_error = ""
            self._set(BreakerState.CLOSED)
        elif permit.generation == self._generation and self._state is BreakerState.CLOSED:
            self._consecutive = 0
            self._results.append(False)

    def failure(self, permit: Permit, error: str) -> None:
        """The host failed (network error, timeout, 5xx, not data)."""
        if permit.probe:
            self.last_error = error
            self._end_probe()
            self._open()
            return
        if permit.generation != self._generation or self._state is not BreakerState.CLOSED:
            return
        self.last_error = error
        self._consecutive += 1
        self._results.append(True)
        c = self.config
        ratio_tripped = (
            len(self._results) >= c.window and sum(self._results) / len(self._results)
            >= c.failure_ratio
        )  # fmt: skip
        if self._consecutive >= c.failures or ratio_tripped:
            self._open()

    def release(self, permit: Permit) -> None:
        """The request ended without a verdict on the host (e.g. 429, cancelled): a probe
        slot is handed to the next waiter."""
        if permit.probe:
            self._end_probe()


class HostBreakers:
    """One :class:`CircuitBreaker` per host, created on first use."""

    def __init__(
        self,
        config: BreakerConfig,
        *,
        monotonic: Clock = time.monotonic,
        wall: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        on_change: Callable[[str, BreakerState], None] | None = None,
    ) -> None:
        self.config = config
        self._monotonic = monotonic
        self._wall = wall
        self._sleep = sleep
        self._on_change = on_change
        self._breakers: dict[str, CircuitBreaker] = {}

    def for_host(self, host: str) -> CircuitBreaker:
        """The host's breaker."""
        breaker = self._breakers.get(host)
        if breaker is None:
            hook = self._on_change

            def changed(state: BreakerState, host: str = host) -> None:
                if hook is not None:
                    hook(host, state)

            breaker = CircuitBreaker(
                host,
                self.config,
                monotonic=self._monotonic,
                wall=self._wall,
                sleep=self._sleep,
                on_change=changed,
            )
            self._breakers[host] = breaker
        return breaker

    def all(self) -> list[CircuitBreaker]:
        """The breakers created so far."""
        return list(self._breakers.values())
