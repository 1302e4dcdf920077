"""Sources that send their own calls (the Deriv WebSocket) behind the generic interface, and
which sources ``main.configured_sources`` registers. A fake with the Deriv contract stands in
for ``tickpipe_fetcher.sources.deriv``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from structlog.testing import capture_logs
from tickpipe_fetcher.breaker import BreakerState
from tickpipe_fetcher.downloader import Downloader
from tickpipe_fetcher.http import (
    HttpResponse,
    PermanentFetchError,
    RetryableFetchError,
    ThrottledFetchError,
)
from tickpipe_fetcher.main import configured_sources, source_proxies
from tickpipe_fetcher.sources import (
    DukascopyBi5,
    DukascopyJson,
    PacedSource,
    PolygonSource,
)
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.records import OutRecord
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.fetch_units import FetchUnit
from tickpipe_shared.wire.raw import RawPayloadMeta

HOUR = 3_600_000
T0 = int(datetime(2018, 7, 23, 10, tzinfo=UTC).timestamp() * 1000)
HOST = "ws.deriv.test"


@dataclass(frozen=True)
class DerivAnswer:
    body: bytes
    empty: bool
    url: str
    requests: int


Script = list[DerivAnswer | BaseException]


class FakeDeriv:
    """The Deriv contract: ``pace()`` before each of ``calls`` calls, then the next scripted
    answer (the last one repeats)."""

    name = "deriv"
    format = "deriv-ticks-history"

    def __init__(self, settings: Settings, connect: Any = None, calls: int = 2,
                 script: Script | None = None, clock: Callable[[], float] | None = None
                 ) -> None:  # fmt: skip
        self.host = HOST
        self.calls = calls
        self.script = script or [DerivAnswer(b'[{"history":{}}]', False, "wss://x/v3", calls)]
        self.clock = clock
        self.paced_at: list[float] = []
        self.closed = False

    async def fetch(
        self, unit: FetchUnit, now_ms: int, pace: Callable[[], Awaitable[None]]
    ) -> DerivAnswer:
        for _ in range(self.calls):
            await pace()
            self.paced_at.append(self.clock() if self.clock else 0.0)
            await asyncio.sleep(0)
        answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def close(self) -> None:
        self.closed = True


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


class NoHttp:
    async def get(self, url: str, headers: Mapping[str, str] | None = None) -> HttpResponse:
        raise AssertionError("a paced source sends its own calls")


@dataclass
class Rec:
    value: bytes | None
    key: bytes | None = b"k"
    topic: str = "tickpipe.fetch-units"
    partition: int = 0
    offset: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


failures: list[BaseException] = []


def run(fake: FakeDeriv, clock: Clock, **settings: Any) -> Downloader:
    failures.clear()

    def failure(record: Any, error: BaseException, attempts: int) -> OutRecord:
        failures.append(error)
        return OutRecord("tickpipe.failures", record.key, str(error).encode())

    s = Settings(
        **{"fetch_rate_per_host": 0, "fetch_attempts": 3, "fetch_delayed_retries": 0, **settings}
    )
    return Downloader(s, {"deriv": PacedSource(fake)}, NoHttp(), failure,
                      clock=lambda: 1.8e9 + clock(), monotonic=clock)  # fmt: skip


def unit(market_open: bool | None = True) -> Rec:
    u = FetchUnit(
        "req-d", Unit("deriv", "R_50", "ticks", T0, T0 + HOUR), "R_50", -1, "synthetic", market_open
    )
    return Rec(u.to_json())


def requests_metric(status: str) -> float:
    labels = {"source": "deriv", "status": status}
    return REGISTRY.get_sample_value("tickpipe_fetcher_http_requests_total", labels) or 0.0


async def test_answer_published_with_the_source_format(clock: Clock) -> None:
    fake = FakeDeriv(Settings(), calls=3)
    before = requests_metric("ok")
    [out] = await run(fake, clock).process([unit()])
    assert out.topic == "tickpipe.raw-payloads" and out.value == b'[{"history":{}}]'
    meta = RawPayloadMeta.from_headers(out.headers)
    assert (meta.format, meta.url, meta.http_status, meta.content_type) == (
        "deriv-ticks-history", "wss://x/v3", 200, "application/json",
    )  # fmt: skip
    assert (meta.price_scale, meta.asset_class, meta.attempts) == (-1, "synthetic", 1)
    assert requests_metric("ok") == before + 3


async def test_every_call_is_paced_by_the_host_rate_limiter(clock: Clock) -> None:
    fake = FakeDeriv(Settings(), calls=4, clock=clock)
    d = run(fake, clock, fetch_rate_per_host=2.0, fetch_rate_burst=1.0)
    await d.process([unit()])
    assert fake.paced_at == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert d.limiters.for_host(HOST).rate == 2.0


async def test_url_token_is_scrubbed(clock: Clock) -> None:
    answer = DerivAnswer(b"[]", False, "wss://x/v3?app_id=1089&token=SECRET", 1)
    [out] = await run(FakeDeriv(Settings(), calls=1, script=[answer]), clock).process([unit()])
    assert "SECRET" not in RawPayloadMeta.from_headers(out.headers).url


async def test_retryable_then_success(clock: Clock) -> None:
    script: Script = [RetryableFetchError("rate limit from deriv"),
                      DerivAnswer(b"[1]", False, "wss://x", 1)]  # fmt: skip
    [out] = await run(FakeDeriv(Settings(), calls=1, script=script), clock).process([unit()])
    assert RawPayloadMeta.from_headers(out.headers).attempts == 2


async def test_permanent_error_is_a_failure_at_once(clock: Clock) -> None:
    fake = FakeDeriv(Settings(), calls=1, script=[PermanentFetchError("InvalidSymbol: R_99")])
    [out] = await run(fake, clock).process([unit()])
    assert out.topic == "tickpipe.failures" and "InvalidSymbol" in str(failures[0])


async def test_failures_open_the_host_breaker(clock: Clock) -> None:
    fake = FakeDeriv(Settings(), calls=1, script=[RetryableFetchError("socket closed")])
    d = run(fake, clock, fetch_breaker_failures=2, fetch_breaker_cooldown_s=5.0,
            fetch_breaker_max_wait_s=1.0)  # fmt: skip
    [out] = await d.process([unit()])
    assert out.topic == "tickpipe.failures"
    assert f"circuit open for host {HOST}" in str(failures[0])
    assert d.breakers.for_host(HOST).state is BreakerState.OPEN


async def test_throttled_answer_slows_the_host_down_without_blaming_it(clock: Clock) -> None:
    script: Script = [ThrottledFetchError("RateLimit: slow down", retry_after=5.0)] * 3 + [
        DerivAnswer(b"[1]", False, "wss://x", 1)
    ]
    fake = FakeDeriv(Settings(), calls=1, script=script, clock=clock)
    d = run(fake, clock, fetch_attempts=4, fetch_rate_per_host=4.0, fetch_rate_burst=1.0,
            fetch_breaker_failures=2)  # fmt: skip
    [out] = await d.process([unit()])
    assert RawPayloadMeta.from_headers(out.headers).attempts == 4
    assert (
        d.breakers.for_host(HOST).state is BreakerState.CLOSED
        and not d.breakers.for_host(HOST).last_error
    )
    assert d.limiters.for_host(HOST).rate < 4.0  # halved, recovering
    assert fake.paced_at[1] >= 5.0  # the host was paused for the Retry-After


async def test_empty_answer_of_an_open_market_is_flagged(clock: Clock) -> None:
    script: Script = [DerivAnswer(b'[{"history":{"prices":[]}}]', True, "wss://x", 1)]
    [out] = await run(FakeDeriv(Settings(), calls=1, script=script), clock,
                      fetch_attempts=2).process([unit(market_open=True)])  # fmt: skip
    assert RawPayloadMeta.from_headers(out.headers).suspect_empty == 1


async def test_close_closes_the_client() -> None:
    fake = FakeDeriv(Settings())
    await PacedSource(fake).close()
    assert fake.closed


# --- configured_sources -----------------------------------------------------------------------


def test_sources_by_configured_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tickpipe_fetcher.main.DerivSource", FakeDeriv)
    settings = Settings(
        dukascopy_json_url="https://json.test/v1",
        dukascopy_bi5_url="https://feed.test/datafeed",
        polygon_url="https://api.polygon.test",
        polygon_api_key=SecretStr("k"),
        polygon_page_limit=1000,
        deriv_url="wss://ws.deriv.test/websockets/v3",
    )
    sources = configured_sources(settings)
    assert set(sources) == {"dukascopy-json", "dukascopy-bi5", "polygon", "deriv"}
    assert isinstance(sources["dukascopy-json"], DukascopyJson)
    assert isinstance(sources["dukascopy-bi5"], DukascopyBi5)
    polygon = sources["polygon"]
    assert isinstance(polygon, PolygonSource)
    assert (polygon.host, polygon.page_limit) == ("api.polygon.test", 1000)
    deriv = sources["deriv"]
    assert isinstance(deriv, PacedSource) and (deriv.name, deriv.host) == ("deriv", HOST)
    empty = {"dukascopy_json_url": "", "dukascopy_bi5_url": "", "polygon_url": "", "deriv_url": ""}
    assert configured_sources(Settings(**empty)) == {}


def test_public_endpoints_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """No URL set: every source points at its public host; Polygon's needs a key."""
    monkeypatch.setattr("tickpipe_fetcher.main.DerivSource", FakeDeriv)
    with capture_logs() as logs:
        sources = configured_sources(Settings())
    assert set(sources) == {"dukascopy-json", "dukascopy-bi5", "deriv"}
    json_api, datafeed = sources["dukascopy-json"], sources["dukascopy-bi5"]
    assert isinstance(json_api, DukascopyJson) and isinstance(datafeed, DukascopyBi5)
    assert json_api.base_url == "https://jetta.dukascopy.com/v1"
    assert datafeed.base_url == "https://datafeed.dukascopy.com/datafeed"
    assert any("TICKPIPE_POLYGON_API_KEY" in e["event"] for e in logs)
    polygon = configured_sources(Settings(polygon_api_key=SecretStr("k")))["polygon"]
    assert isinstance(polygon, PolygonSource) and polygon.host == "api.polygon.io"


def test_source_proxies_by_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tickpipe_fetcher.main.DerivSource", FakeDeriv)
    settings = Settings(
        polygon_url="https://api.polygon.test/",
        deriv_url="wss://ws.deriv.test/websockets/v3",
        dukascopy_json_url="",
        dukascopy_bi5_url="",
        http_proxy_by_source={"polygon": "http://proxy:3128", "deriv": "", "nope": "x"},
    )
    with capture_logs() as logs:
        proxies = source_proxies(settings, configured_sources(settings))
    assert proxies == {"https://api.polygon.test": "http://proxy:3128"}
    assert [e["source"] for e in logs if e["event"].startswith("proxy configured")] == ["nope"]
