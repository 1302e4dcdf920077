"""The download pipeline: no rounds, a dead host holds up nobody, offsets commit contiguously;
delayed retries of transiently failed units.

Real :class:`Downloader` over fake transports (no network); time is virtual where waits matter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from tickpipe_fetcher.downloader import DelayedRetry, Downloader
from tickpipe_fetcher.http import HttpResponse, RetryableFetchError
from tickpipe_fetcher.pipeline import OffsetTracker, UnitPipeline
from tickpipe_fetcher.sources.base import Answer, Requests
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.records import OutRecord
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.fetch_units import FetchUnit
from tickpipe_shared.wire.headers import decode_headers

HOUR = 3_600_000
T0 = int(datetime(2019, 2, 4, tzinfo=UTC).timestamp() * 1000)
UNITS_TOPIC = "tickpipe.fetch-units"


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
class Transport:
    """``silent`` hosts never answer (until ``release``); ``failing[url]`` answers 500 that many
    times first; everything else answers 200 at once."""

    silent: set[str] = field(default_factory=set)
    failing: dict[str, int] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    calls: list[str] = field(default_factory=list)

    async def get(self, url: str, headers: Mapping[str, str] | None = None) -> HttpResponse:
        self.calls.append(url)
        if url.split("/")[2] in self.silent:
            await self.release.wait()
        await asyncio.sleep(0)
        if self.failing.get(url, 0) > 0:
            self.failing[url] -= 1
            return HttpResponse(500, b"down")
        return HttpResponse(200, url.encode())


@dataclass
class Rec:
    value: bytes | None
    offset: int = 0
    partition: int = 0
    key: bytes | None = b"k"
    topic: str = UNITS_TOPIC
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def rec(source: str, i: int, offset: int) -> Rec:
    unit = FetchUnit("r", Unit(source, "X", "ticks", T0 + i * HOUR, T0 + (i + 1) * HOUR), "X", -1)
    return Rec(unit.to_json(), offset=offset, key=f"{source}-{i}".encode())


def downloader(transport: Transport, **settings: Any) -> Downloader:
    s = Settings(**{"fetch_rate_per_host": 0, "fetch_concurrency": 4,
                    "fetch_concurrency_per_host": 2, "fetch_backoff_base_s": 0.0,
                    "fetch_backoff_max_s": 0.0, **settings})  # fmt: skip

    def failure(record: Any, error: BaseException, attempts: int) -> OutRecord:
        return OutRecord("tickpipe.failures", record.key, str(error).encode())

    sources = {"dead": UrlSource("dead", "dead.test"), "fast": UrlSource("fast", "fast.test")}
    return Downloader(s, sources, transport, failure)


async def until(predicate: Any, steps: int = 2000) -> None:
    for _ in range(steps):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


# --- offsets -------------------------------------------------------------------------------


def test_offsets_commit_only_contiguous_work() -> None:
    t = OffsetTracker()
    p = ("t", 0)
    for o in (10, 11, 12, 13):
        t.start(p, o)
    assert t.committable() == {p: 10}
    t.finish(p, 11)
    t.finish(p, 13)
    assert t.committable() == {p: 10}  # 10 is still open
    t.finish(p, 10)
    assert t.committable() == {p: 12}
    t.finish(p, 12)
    assert t.committable() == {p: 14} and t.in_flight(p) == 0
    t.start(("t", 1), 5)
    assert t.committable() == {p: 14, ("t", 1): 5}
    t.forget([("t", 1)])
    assert t.committable() == {p: 14}


# --- no rounds -----------------------------------------------------------------------------


async def test_dead_host_never_holds_up_a_fast_one() -> None:
    """One host never answers, one answers at once; units of both interleave in one partition.
    Every fast unit is produced while the dead ones still wait; the commit stops at the first
    dead unit; once the dead host answers, everything finishes and commits."""
    transport = Transport(silent={"dead.test"})
    d = downloader(transport)
    emitted: list[OutRecord] = []

    async def emit(out: OutRecord) -> None:
        emitted.append(out)

    pipeline = UnitPipeline(d.download, emit, capacity=32)
    records = [rec("dead" if i % 4 == 1 else "fast", i, offset=i) for i in range(24)]
    for r in records:
        await pipeline.submit(r)  # never blocks: capacity is not reached
    fast = [r for r in records if r.key and r.key.startswith(b"fast")]
    await until(lambda: len(emitted) == len(fast) and pipeline.active == len(records) - len(fast))
    assert all(b"fast.test" in o.value for o in emitted)
    assert all(o.topic == "tickpipe.raw-payloads" for o in emitted)
    assert pipeline.offsets.committable() == {(UNITS_TOPIC, 0): 1}  # offset 1 is dead's
    # The dead host used only its own two slots.
    assert sum("dead.test" in c for c in transport.calls) == 2
    transport.release.set()
    await pipeline.drain()
    assert len(emitted) == len(records)
    assert pipeline.offsets.committable() == {(UNITS_TOPIC, 0): 24}


async def test_a_finished_unit_frees_its_slot_at_once() -> None:
    """Capacity 2: with one unit stuck on the dead host, the other place keeps turning over."""
    transport = Transport(silent={"dead.test"})
    d = downloader(transport)
    emitted: list[OutRecord] = []

    async def emit(out: OutRecord) -> None:
        emitted.append(out)

    pipeline = UnitPipeline(d.download, emit, capacity=2)
    await pipeline.submit(rec("dead", 0, offset=0))
    for i in range(1, 11):
        await asyncio.wait_for(pipeline.submit(rec("fast", i, offset=i)), timeout=1)
    await until(lambda: len(emitted) == 10 and pipeline.active == 1)
    await pipeline.cancel()
    assert pipeline.active == 0 and pipeline.offsets.committable() == {}


# --- delayed retry -------------------------------------------------------------------------


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Patch every fetcher wait away; returns the waits asked for."""
    asked: list[float] = []

    async def no_wait(seconds: float) -> None:
        asked.append(seconds)
        await asyncio.sleep(0)

    monkeypatch.setattr("tickpipe_fetcher.http.sleep", no_wait)
    return asked


async def run_through_requeues(d: Downloader, record: Rec) -> tuple[OutRecord, int]:
    """Download ``record``, feeding re-queued units back in as the topic would; returns the
    final output and how many times it was re-queued."""
    requeued = 0
    out = await d.download(record)
    while out.topic == UNITS_TOPIC:
        requeued += 1
        out = await d.download(Rec(out.value, key=out.key, headers=list(out.headers)))
    return out, requeued


async def test_transient_failures_end_stored_after_delayed_retries(waits: list[float]) -> None:
    """Fails all 2 attempts twice over (4 answers of 500), then answers: stored, not failed."""
    url = f"http://fast.test/{T0}"
    transport = Transport(failing={url: 4})
    d = downloader(transport, fetch_attempts=2, fetch_delayed_retries=3,
                   fetch_delayed_retry_s=60.0, fetch_breaker_failures=100)  # fmt: skip
    r = rec("fast", 0, offset=0)
    r.headers = [("tp-request_id", b"req-1")]
    first = await d.download(r)
    assert first.topic == UNITS_TOPIC and first.key == r.key and first.value == r.value
    h = decode_headers(first.headers)
    assert h["delayed_round"] == "1" and h["request_id"] == "req-1"
    assert int(h["not_before_ms"]) > 0
    out, requeued = await run_through_requeues(d, Rec(first.value, key=first.key,
                                                      headers=list(first.headers)))  # fmt: skip
    assert out.topic == "tickpipe.raw-payloads" and out.value == url.encode()
    assert requeued == 1  # round 1 failed too (answers 3 and 4); round 2 got the data
    assert len(transport.calls) == 5
    # The second round waited about twice as long as the first would have (60 s, then 120 s).
    assert any(110 < w <= 120 for w in waits)


async def test_delayed_budget_spent_ends_failed_with_the_reason(waits: list[float]) -> None:
    transport = Transport(failing={f"http://fast.test/{T0}": 1000})
    d = downloader(transport, fetch_attempts=2, fetch_delayed_retries=2,
                   fetch_delayed_retry_s=1.0, fetch_breaker_failures=1000)  # fmt: skip
    out, requeued = await run_through_requeues(d, rec("fast", 0, offset=0))
    assert requeued == 2 and len(transport.calls) == 6  # 3 rounds × 2 attempts
    assert out.topic == "tickpipe.failures"
    reason = out.value.decode()
    assert "gave up after 2 attempts; last error: HTTP 500" in reason
    assert "after 2 delayed retries" in reason


async def test_permanent_failures_are_not_delayed(waits: list[float]) -> None:
    d = downloader(Transport(), fetch_delayed_retries=3)
    bad = Rec(b"not json", key=b"bad")
    out = await d.download(bad)
    assert out.topic == "tickpipe.failures"


def test_delayed_retry_headers_round_trip() -> None:
    state = DelayedRetry(2, 1_700_000_000_000)
    assert DelayedRetry.of(state.headers()) == state
    assert DelayedRetry.of(None) == DelayedRetry()
    assert DelayedRetry.of([("tp-delayed_round", b"x")]) == DelayedRetry()
