"""Per-host download slots: a stalled or dead host holds its own slots, never all of them.

Two fake sources on two hosts; the transport answers per host. Time is virtual (the patched
``tickpipe_fetcher.http.sleep`` advances it); a stalled host's requests block on an event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from tickpipe_fetcher.downloader import Downloader
from tickpipe_fetcher.http import HttpResponse, RetryableFetchError
from tickpipe_fetcher.sources.base import Answer, Requests
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.records import OutRecord
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.fetch_units import FetchUnit

HOUR = 3_600_000
T0 = int(datetime(2019, 2, 4, tzinfo=UTC).timestamp() * 1000)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()

    async def fake_sleep(seconds: float) -> None:
        c.t += max(0.0, seconds)
        await asyncio.sleep(0)

    monkeypatch.setattr("tickpipe_fetcher.http.sleep", fake_sleep)
    return c


class UrlSource:
    """A one-request source on ``host``: GET ``http://{host}/{start}``, the body is the data."""

    def __init__(self, name: str, host: str) -> None:
        self.name = name
        self.host = host

    async def fetch(self, unit: FetchUnit, now_ms: int, requests: Requests) -> Answer:
        url = f"http://{self.host}/{unit.unit.start_ms}"
        response = await requests.get(url)
        if response.status != 200:
            raise RetryableFetchError(f"HTTP {response.status} from {url}")
        return Answer(response.body, False, url, 200, "", "test", 1)

    async def close(self) -> None:
        """Nothing held."""


@dataclass
class HostTransport:
    """``stalled`` hosts block until ``release`` is set; ``dead`` hosts answer 500; others 200.
    Records (virtual time, url) of every request and the most requests in flight per host."""

    clock: Clock
    stalled: set[str] = field(default_factory=set)
    dead: set[str] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    calls: list[tuple[float, str]] = field(default_factory=list)
    active: dict[str, int] = field(default_factory=dict)
    most: dict[str, int] = field(default_factory=dict)
    most_overall: int = 0

    async def get(self, url: str, headers: Mapping[str, str] | None = None) -> HttpResponse:
        host = url.split("/")[2]
        self.calls.append((self.clock(), url))
        self.active[host] = self.active.get(host, 0) + 1
        self.most[host] = max(self.most.get(host, 0), self.active[host])
        self.most_overall = max(self.most_overall, sum(self.active.values()))
        try:
            if host in self.stalled:
                await self.release.wait()
            await asyncio.sleep(0)
            if host in self.dead:
                return HttpResponse(500, b"down")
            return HttpResponse(200, url.encode())
        finally:
            self.active[host] -= 1


@dataclass
class Rec:
    value: bytes | None
    key: bytes | None = b"k"
    topic: str = "tickpipe.fetch-units"
    partition: int = 0
    offset: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def records(source: str, n: int) -> list[Rec]:
    units = [FetchUnit("r", Unit(source, "X", "ticks", T0 + i * HOUR, T0 + (i + 1) * HOUR), "X", -1)
             for i in range(n)]  # fmt: skip
    return [Rec(u.to_json()) for u in units]


def downloader(clock: Clock, transport: HostTransport, **settings: Any) -> Downloader:
    s = Settings(**{"fetch_rate_per_host": 0, "fetch_backoff_base_s": 0.1,
                    "fetch_backoff_max_s": 1.0, "fetch_delayed_retries": 0,
                    **settings})  # fmt: skip

    def failure(record: Any, error: BaseException, attempts: int) -> OutRecord:
        return OutRecord("tickpipe.failures", record.key, str(error).encode())

    sources = {"slow": UrlSource("slow", "slow.test"), "fast": UrlSource("fast", "fast.test")}
    return Downloader(s, sources, transport, failure, clock=lambda: 1.8e9 + clock(),
                      monotonic=clock)  # fmt: skip


async def test_stalled_host_leaves_slots_to_a_healthy_one(clock: Clock) -> None:
    transport = HostTransport(clock, stalled={"slow.test"})
    d = downloader(clock, transport, fetch_concurrency=4, fetch_concurrency_per_host=2)
    # The stalled host's units come first: with one shared pool they would take every slot.
    task = asyncio.create_task(d.process(records("slow", 6) + records("fast", 6)))
    for _ in range(200):
        await asyncio.sleep(0)
        if sum("fast.test" in u for _, u in transport.calls) == 6:
            break
    fast = [u for _, u in transport.calls if "fast.test" in u]
    assert len(fast) == 6, "the healthy host's units did not all run while the other stalled"
    assert transport.most["slow.test"] == 2  # the stalled host holds its own two slots only
    assert not task.done()
    transport.release.set()
    outs = await asyncio.wait_for(task, 5)
    assert [o.topic for o in outs] == ["tickpipe.raw-payloads"] * 12
    assert transport.most["fast.test"] == 2 and transport.most_overall <= 4


async def test_global_concurrency_bounds_requests_in_flight(clock: Clock) -> None:
    transport = HostTransport(clock, stalled={"slow.test", "fast.test"})
    d = downloader(clock, transport, fetch_concurrency=3, fetch_concurrency_per_host=2)
    task = asyncio.create_task(d.process(records("slow", 4) + records("fast", 4)))
    for _ in range(50):
        await asyncio.sleep(0)
    assert transport.most_overall == 3  # 2 of one host + 1 of the other
    transport.release.set()
    outs = await asyncio.wait_for(task, 5)
    assert all(o.topic == "tickpipe.raw-payloads" for o in outs)


async def test_waiting_on_an_open_breaker_does_not_block_another_host() -> None:
    # Real time here (a virtual clock jumps for every sleeper): the dead host's units wait up to
    # 0.5 s for its open breaker, then fail; the healthy units must not wait for that.
    real = Clock()
    transport = HostTransport(real, dead={"slow.test"})
    failed_at: list[float] = []

    def failure(record: Any, error: BaseException, attempts: int) -> OutRecord:
        failed_at.append(time.monotonic())
        return OutRecord("tickpipe.failures", record.key, str(error).encode())

    s = Settings(fetch_rate_per_host=0, fetch_backoff_base_s=0.01, fetch_backoff_max_s=0.01,
                 fetch_concurrency=2,  # as many slots as the dead host may use
                 fetch_concurrency_per_host=2, fetch_attempts=3, fetch_breaker_failures=2,
                 fetch_breaker_cooldown_s=60.0, fetch_breaker_max_wait_s=0.5,
                 fetch_delayed_retries=0)  # fmt: skip
    sources = {"slow": UrlSource("slow", "slow.test"), "fast": UrlSource("fast", "fast.test")}
    d = Downloader(s, sources, transport, failure)
    sent_at: list[float] = []
    real_get = transport.get

    async def timed_get(url: str, headers: Mapping[str, str] | None = None) -> HttpResponse:
        if "fast.test" in url:
            sent_at.append(time.monotonic())
        return await real_get(url, headers)

    transport.get = timed_get  # type: ignore[method-assign]
    outs = await d.process(records("slow", 4) + records("fast", 4))
    assert [o.topic for o in outs] == ["tickpipe.failures"] * 4 + ["tickpipe.raw-payloads"] * 4
    assert all(b"circuit open for host slow.test" in o.value for o in outs[:4])
    assert len(sent_at) == 4 and max(sent_at) < min(failed_at)
