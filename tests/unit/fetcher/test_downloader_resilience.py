"""The downloader with its rate limiter and circuit breaker: a fake transport on a fake clock."""

from __future__ import annotations

import asyncio
import itertools
import lzma
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY
from tickpipe_fetcher.breaker import BreakerState
from tickpipe_fetcher.downloader import Downloader, DownloadFailedError
from tickpipe_fetcher.http import HttpResponse
from tickpipe_fetcher.sources import DukascopyBi5
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.records import OutRecord
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.fetch_units import FetchUnit
from tickpipe_shared.wire.raw import RawPayloadMeta

HOUR = 3_600_000
T0 = int(datetime(2019, 2, 4, 0, tzinfo=UTC).timestamp() * 1000)
BASE = "https://resilience.test/datafeed"
HOST = "resilience.test"
BODY = lzma.compress(b"\x00" * 40, format=lzma.FORMAT_ALONE)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


Answer = Callable[[str, float], HttpResponse]  # (url, now) → response (or raise)


@dataclass
class TimedTransport:
    """Answers with ``answer(url, now)``; records (now, url) of every request."""

    clock: Clock
    answer: Answer
    calls: list[tuple[float, str]] = field(default_factory=list)

    async def get(self, url: str, headers: Mapping[str, str] | None = None) -> HttpResponse:
        self.calls.append((self.clock(), url))
        await asyncio.sleep(0)
        return self.answer(url, self.clock())


@dataclass
class Rec:
    value: bytes | None
    key: bytes | None = b"k"
    topic: str = "tickpipe.fetch-units"
    partition: int = 0
    offset: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()

    async def fake_sleep(seconds: float) -> None:
        c.t += max(0.0, seconds)
        await asyncio.sleep(0)

    monkeypatch.setattr("tickpipe_fetcher.http.sleep", fake_sleep)
    return c


failures: list[tuple[Any, BaseException, int]] = []


def failure(record: Any, error: BaseException, attempts: int) -> OutRecord:
    failures.append((record, error, attempts))
    return OutRecord("tickpipe.failures", record.key, str(error).encode())


def downloader(clock: Clock, transport: TimedTransport, **settings: Any) -> Downloader:
    failures.clear()
    s = Settings(**{"fetch_concurrency": 16, "fetch_concurrency_per_host": 16,
                    "fetch_backoff_base_s": 0.1, "fetch_backoff_max_s": 1.0,
                    "fetch_delayed_retries": 0, **settings})  # fmt: skip
    return Downloader(
        s, {"dukascopy-bi5": DukascopyBi5(BASE)}, transport, failure,
        clock=lambda: 1_800_000_000.0 + clock(), monotonic=clock,
    )  # fmt: skip


def units(n: int) -> list[Rec]:
    return [
        Rec(
            FetchUnit(
                "r",
                Unit("dukascopy-bi5", "EURUSD", "ticks", T0 + i * HOUR, T0 + (i + 1) * HOUR),
                "EURUSD",
                5,
            ).to_json()
        )
        for i in range(n)
    ]


def ok(url: str, now: float) -> HttpResponse:
    return HttpResponse(200, BODY, {"content-type": "application/octet-stream"})


def max_in_window(times: list[float], window: float = 1.0) -> int:
    return max(sum(1 for u in times if s <= u < s + window - 1e-9) for s in times)


def breaker_metric(host: str = HOST) -> float | None:
    return REGISTRY.get_sample_value("tickpipe_fetcher_breaker_state", {"host": host})


async def test_rate_is_never_exceeded(clock: Clock) -> None:
    transport = TimedTransport(clock, ok)
    d = downloader(clock, transport, fetch_rate_per_host=5.0, fetch_rate_burst=3.0)
    outs = await d.process(units(30))
    assert all(o.topic == "tickpipe.raw-payloads" for o in outs)
    times = [t for t, _ in transport.calls]
    assert max_in_window(times) <= 5 + 3
    assert times[-1] == pytest.approx((30 - 3) / 5)  # burst, then exactly the rate


async def test_replicas_share_the_total(clock: Clock) -> None:
    transport = TimedTransport(clock, ok)
    d = downloader(
        clock, transport, fetch_rate_per_host=6.0, fetch_rate_burst=3.0, fetch_replicas=3
    )
    await d.process(units(11))
    times = [t for t, _ in transport.calls]
    assert times[-1] == pytest.approx(10 / 2.0)  # 2/s each, burst 1


async def test_a_stray_429_delays_only_its_own_unit(clock: Clock) -> None:
    state = {"n": 0}

    def first_429(url: str, now: float) -> HttpResponse:
        state["n"] += 1
        if state["n"] == 1:
            return HttpResponse(429, b"slow down", {"retry-after": "10"})
        return ok(url, now)

    transport = TimedTransport(clock, first_429)
    d = downloader(clock, transport, fetch_rate_per_host=1.0, fetch_rate_burst=1.0)
    outs = await d.process(units(3))
    assert [o.topic for o in outs] == ["tickpipe.raw-payloads"] * 3
    times = sorted(t for t, _ in transport.calls)
    assert len(times) == 4 and times[-1] < 10.0  # nobody waited for a 10 s host pause
    assert d.limiters.for_host(HOST).rate == 1.0  # one stray 429 is not a rate limit
    assert d.breakers.for_host(HOST).state is BreakerState.CLOSED  # 429 is not a host failure


async def test_a_throttling_storm_pauses_every_unit_of_the_host(clock: Clock) -> None:
    def storm_until_30(url: str, now: float) -> HttpResponse:
        if now < 30.0:
            return HttpResponse(429, b"slow down", {"retry-after": "10"})
        return ok(url, now)

    transport = TimedTransport(clock, storm_until_30)
    d = downloader(clock, transport, fetch_rate_per_host=100.0, fetch_rate_burst=100.0,
                   fetch_attempts=10)  # fmt: skip
    outs = await d.process(units(12))
    assert [o.topic for o in outs] == ["tickpipe.raw-payloads"] * 12
    limiter = d.limiters.for_host(HOST)
    assert limiter.rate < 100.0  # halved, recovering slowly
    times = sorted(t for t, _ in transport.calls)
    # Once the storm was recognised (10 of the last 20 answers), the host was paused: the
    # requests after it waited for the Retry-After instead of going at 100 req/s.
    assert any(later - earlier >= 9.9 for earlier, later in itertools.pairwise(times))


async def test_breaker_opens_units_wait_without_spending_attempts_then_complete(
    clock: Clock,
) -> None:
    def down_until_20(url: str, now: float) -> HttpResponse:
        if now < 20.0:
            raise aiohttp.ServerDisconnectedError()
        return ok(url, now)

    transport = TimedTransport(clock, down_until_20)
    d = downloader(
        clock,
        transport,
        fetch_rate_per_host=0,
        fetch_attempts=3,
        fetch_breaker_failures=3,
        fetch_breaker_cooldown_s=15.0,
    )
    seen: list[float | None] = []

    async def watch() -> None:
        while clock() < 40:
            seen.append(breaker_metric())
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    outs = await d.process(units(6))
    watcher.cancel()
    assert [o.topic for o in outs] == ["tickpipe.raw-payloads"] * 6, failures
    breaker = d.breakers.for_host(HOST)
    assert breaker.state is BreakerState.CLOSED and breaker.opened >= 2
    assert 2.0 in seen  # the metric showed "open"
    assert breaker_metric() == 0.0
    # Down for 20 s with 3 attempts and ≤ 1 s backoff: without the breaker every unit would
    # have failed. The 6 first attempts open it; probes at 15 (fails) and 30 (succeeds); the
    # other units waited without spending attempts and took their second one after 30.
    attempts = [RawPayloadMeta.from_headers(o.headers).attempts for o in outs]
    assert len(transport.calls) == sum(attempts) == 6 + 2 + 5
    later = [t for t, _ in transport.calls[6:]]
    assert len([t for t in later if t < 29]) == 1 and 15 <= later[0] < 16  # only the probe


async def test_dead_host_fails_units_with_a_clear_reason(clock: Clock) -> None:
    def dead(url: str, now: float) -> HttpResponse:
        return HttpResponse(500, b"oops")

    transport = TimedTransport(clock, dead)
    d = downloader(
        clock,
        transport,
        fetch_rate_per_host=0,
        fetch_attempts=5,
        fetch_breaker_failures=2,
        fetch_breaker_cooldown_s=10.0,
        fetch_breaker_max_wait_s=60.0,
    )
    outs = await d.process(units(4))
    assert [o.topic for o in outs] == ["tickpipe.failures"] * 4
    assert len(failures) == 4
    circuit = f"circuit open for host {HOST} since 2027-01-15T08:00:00Z"
    for _, error, attempts in failures:
        assert isinstance(error, DownloadFailedError)
        assert "last error: HTTP 500 from" in str(error)
        assert attempts == error.attempts and 1 <= attempts <= 5
        # A unit that happened to be the probe spends attempts; the others wait and give up.
        assert circuit in str(error) or "gave up after 5 attempts" in str(error)
    assert sum(circuit in str(e) for _, e, _ in failures) >= 2
    # Each unit waits at most 60 s in total; time it spends on its own attempts (as the probe)
    # comes on top: at most 5 attempts, one per 10-s cool-down.
    assert 60.0 <= clock() <= 60.0 + 5 * 10.0 + 2
    # While open, only probes went: one per cool-down.
    assert len(transport.calls) <= 4 + clock() / 10 + 1


async def test_permanent_answer_counts_as_host_up(clock: Clock) -> None:
    transport = TimedTransport(clock, lambda url, now: HttpResponse(403, b"no"))
    d = downloader(clock, transport, fetch_rate_per_host=0, fetch_breaker_failures=1)
    await d.process(units(3))
    assert d.breakers.for_host(HOST).state is BreakerState.CLOSED


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (HttpResponse(200, b"<!DOCTYPE html><html>x</html>", {"content-type": "text/html"}),
         "HTML page"),
        (HttpResponse(403, b"<html><title>Just a moment...</title>cf-chl</html>"), "HTTP 403"),
        (HttpResponse(200, b"<html><title>Just a moment...</title>cf-chl</html>"),
         "anti-bot challenge page"),
        (HttpResponse(200, BODY[:10], {"content-length": str(len(BODY))}), "truncated body"),
        (HttpResponse(200, b'{"error": "x"}', {"content-type": "application/json"}),
         "wrong content type application/json"),
        (HttpResponse(200, b"\x00\x01junk", {"content-type": "application/octet-stream"}),
         "not an LZMA stream"),
    ],
    ids=["html", "challenge-403", "challenge-200", "truncated", "json", "not-lzma"],
)  # fmt: skip
async def test_not_data_is_a_clear_error(clock: Clock, answer: HttpResponse, message: str) -> None:
    transport = TimedTransport(clock, lambda url, now: answer)
    d = downloader(clock, transport, fetch_rate_per_host=0, fetch_attempts=2)
    await d.process(units(1))
    [(_, error, _)] = failures
    assert message in str(error)


@pytest.mark.parametrize(
    "error",
    [
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientPayloadError("Response payload is not completed"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
    ],
    ids=["disconnected", "payload", "reset", "timeout"],
)
async def test_resets_and_truncation_are_retried(clock: Clock, error: BaseException) -> None:
    state = {"n": 0}

    def flaky(url: str, now: float) -> HttpResponse:
        state["n"] += 1
        if state["n"] == 1:
            raise error
        return ok(url, now)

    d = downloader(clock, TimedTransport(clock, flaky), fetch_rate_per_host=0)
    [out] = await d.process(units(1))
    assert RawPayloadMeta.from_headers(out.headers).attempts == 2
