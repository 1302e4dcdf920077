"""``tickpipe_fetcher.downloader``: downloads with a fake transport, retries without waiting."""

from __future__ import annotations

import asyncio
import hashlib
import json
import lzma
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs
from tickpipe_fetcher.downloader import Downloader, DownloadFailedError
from tickpipe_fetcher.http import HttpResponse, RetryPolicy
from tickpipe_fetcher.sources import DukascopyBi5, DukascopyJson
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.records import OutRecord
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.fetch_units import FetchUnit
from tickpipe_shared.wire.raw import RawPayloadMeta

HOUR = 3_600_000
T0 = int(datetime(2019, 2, 4, 5, tzinfo=UTC).timestamp() * 1000)
NOW = 1_800_000_000.0  # clock() in seconds
BI5_BASE = "https://datafeed.test/datafeed"
JSON_BASE = "https://json.test/v1"
BI5_URL = f"{BI5_BASE}/EURUSD/2019/01/04/05h_ticks.bi5"
LZMA_BODY = lzma.compress(b"\x00" * 40, format=lzma.FORMAT_ALONE)
JSON_BODY = b'{"timestamp":1549256400000,"multiplier":0.00001,"times":[]}'

Scripted = HttpResponse | BaseException


class FakeTransport:
    """Returns scripted answers per URL (the last one repeats); measures concurrency."""

    def __init__(self, script: dict[str, Sequence[Scripted]], latency: float = 0.0) -> None:
        self.script = {url: list(answers) for url, answers in script.items()}
        self.latency = latency
        self.calls: list[str] = []
        self.headers: list[Mapping[str, str] | None] = []
        self.active = 0
        self.max_active = 0

    async def get(self, url: str, headers: Mapping[str, str] | None = None) -> HttpResponse:
        self.calls.append(url)
        self.headers.append(headers)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(self.latency)
            answers = self.script[url]
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
            if isinstance(answer, BaseException):
                raise answer
            return answer
        finally:
            self.active -= 1


@dataclass
class Rec:
    value: bytes | None
    key: bytes | None = b"k"
    topic: str = "tickpipe.fetch-units"
    partition: int = 0
    offset: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


failures: list[tuple[Any, BaseException, int]] = []


class FakeMonotonic:
    """Virtual monotonic time: only the patched sleep moves it (rate limiter, breaker)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


monotonic = FakeMonotonic()


def failure(record: Any, error: BaseException, attempts: int) -> OutRecord:
    failures.append((record, error, attempts))
    return OutRecord("tickpipe.failures", record.key, str(error).encode())


@pytest.fixture(autouse=True)
def no_wait(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    delays: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)
        monotonic.t += seconds
        await asyncio.sleep(0)

    monkeypatch.setattr("tickpipe_fetcher.http.sleep", fake_sleep)
    failures.clear()
    return delays


def make(transport: FakeTransport, attempts: int = 3, concurrency: int = 4) -> Downloader:
    settings = Settings(
        fetch_attempts=attempts,
        fetch_concurrency=concurrency,
        fetch_concurrency_per_host=concurrency,
        fetch_delayed_retries=0,  # these tests are about one unit's attempts
    )
    return Downloader(
        settings,
        {"dukascopy-bi5": DukascopyBi5(BI5_BASE), "dukascopy-json": DukascopyJson(JSON_BASE)},
        transport,
        failure,
        clock=lambda: NOW,
        monotonic=monotonic,
    )


def fetch_unit(
    start: int = T0,
    source: str = "dukascopy-bi5",
    scale: int = 5,
    market_open: bool | None = None,
) -> bytes:
    code = "EURUSD" if source == "dukascopy-bi5" else "EUR-USD"
    return FetchUnit(
        "req-42",
        Unit(source, "EURUSD", "ticks", start, start + HOUR),
        code,
        scale,
        "fx",
        market_open,
    ).to_json()


def ok(body: bytes = LZMA_BODY, **headers: str) -> HttpResponse:
    return HttpResponse(200, body, {k.replace("_", "-"): v for k, v in headers.items()})


async def test_success_raw_payload_record() -> None:
    transport = FakeTransport({BI5_URL: [ok(content_type="application/octet-stream")]})
    [out] = await make(transport).process([Rec(fetch_unit(scale=3))])
    assert out.topic == "tickpipe.raw-payloads"
    assert out.key == b"dukascopy-bi5|EURUSD|ticks|2019-02-04T05:00:00Z"
    assert out.value == LZMA_BODY
    meta = RawPayloadMeta.from_headers(out.headers)
    assert meta == RawPayloadMeta(
        unit=Unit("dukascopy-bi5", "EURUSD", "ticks", T0, T0 + HOUR),
        format="dukascopy-bi5-ticks",
        url=BI5_URL,
        sha256=hashlib.sha256(LZMA_BODY).hexdigest(),
        fetched_at_ms=int(NOW * 1000),
        price_scale=3,
        request_id="req-42",
        http_status=200,
        content_type="application/octet-stream",
        attempts=1,
        source_code="EURUSD",
        asset_class="fx",
        suspect_empty=0,
    )
    assert transport.calls == [BI5_URL]
    assert transport.headers == [None]  # Dukascopy needs no credentials
    assert failures == []


async def test_json_source_success_uses_json_url_and_format() -> None:
    url = f"{JSON_BASE}/ticks/EUR-USD/2019/2/4/5"
    transport = FakeTransport({url: [ok(JSON_BODY)]})
    [out] = await make(transport).process([Rec(fetch_unit(source="dukascopy-json"))])
    meta = RawPayloadMeta.from_headers(out.headers)
    assert (meta.format, meta.url, meta.unit.source) == (
        "dukascopy-json-ticks",
        url,
        "dukascopy-json",
    )
    assert out.value == JSON_BODY


async def test_retries_until_success(no_wait: list[float]) -> None:
    transport = FakeTransport({BI5_URL: [HttpResponse(503, b""), HttpResponse(503, b""), ok()]})
    [out] = await make(transport, attempts=3).process([Rec(fetch_unit())])
    assert RawPayloadMeta.from_headers(out.headers).attempts == 3
    assert out.value == LZMA_BODY
    assert len(transport.calls) == 3
    assert len(no_wait) == 2  # a wait between attempts, none after the last
    assert all(0 <= d <= 30 for d in no_wait)


async def test_gives_up_after_attempts(no_wait: list[float]) -> None:
    transport = FakeTransport({BI5_URL: [HttpResponse(503, b"busy")]})
    record = Rec(fetch_unit(), key=b"orig-key")
    [out] = await make(transport, attempts=4).process([record])
    assert out.topic == "tickpipe.failures" and out.key == b"orig-key"
    assert len(transport.calls) == 4
    assert len(no_wait) == 3
    [(rec, error, attempts)] = failures
    assert rec is record and attempts == 4
    assert isinstance(error, DownloadFailedError) and error.attempts == 4
    assert str(error) == (
        "dukascopy-bi5|EURUSD|ticks|2019-02-04T05:00:00Z: gave up after 4 attempts; "
        f"last error: HTTP 503 from {BI5_URL}"
    )


@pytest.mark.parametrize(
    "error",
    [aiohttp.ClientConnectionError("connection reset"), TimeoutError(), ConnectionResetError()],
    ids=["client-connection", "timeout", "os-error"],
)
async def test_network_errors_retried(error: BaseException) -> None:
    transport = FakeTransport({BI5_URL: [error, ok()]})
    [out] = await make(transport).process([Rec(fetch_unit())])
    assert RawPayloadMeta.from_headers(out.headers).attempts == 2
    assert failures == []


async def test_network_error_as_last_error() -> None:
    transport = FakeTransport({BI5_URL: [aiohttp.ClientConnectionError("refused")]})
    await make(transport, attempts=2).process([Rec(fetch_unit())])
    [(_, error, attempts)] = failures
    assert attempts == 2
    assert str(error).endswith(f"last error: ClientConnectionError from {BI5_URL}: refused")


async def test_retry_after_honoured(no_wait: list[float]) -> None:
    transport = FakeTransport({BI5_URL: [HttpResponse(429, b"", {"retry-after": "12"}), ok()]})
    [out] = await make(transport).process([Rec(fetch_unit())])
    assert RawPayloadMeta.from_headers(out.headers).attempts == 2
    assert no_wait == [12.0]


async def test_html_then_data_retried() -> None:
    html = HttpResponse(
        200, b"<html><body>maintenance</body></html>", {"content-type": "text/html"}
    )
    transport = FakeTransport({BI5_URL: [html, ok()]})
    [out] = await make(transport).process([Rec(fetch_unit())])
    assert RawPayloadMeta.from_headers(out.headers).attempts == 2


async def test_permanent_error_not_retried(no_wait: list[float]) -> None:
    transport = FakeTransport({BI5_URL: [HttpResponse(403, b"forbidden")]})
    [out] = await make(transport).process([Rec(fetch_unit())])
    assert out.topic == "tickpipe.failures"
    assert transport.calls == [BI5_URL]
    assert no_wait == []
    [(_, error, attempts)] = failures
    assert attempts == 1
    assert str(error) == f"dukascopy-bi5|EURUSD|ticks|2019-02-04T05:00:00Z: HTTP 403 from {BI5_URL}"


async def test_permanent_after_retries_reports_attempt_number() -> None:
    transport = FakeTransport({BI5_URL: [HttpResponse(503, b""), HttpResponse(401, b"")]})
    await make(transport).process([Rec(fetch_unit())])
    [(_, error, attempts)] = failures
    assert attempts == 2 and "HTTP 401" in str(error)


@pytest.mark.parametrize(
    ("answer", "status"), [(HttpResponse(200, b""), 200), (HttpResponse(404, b"nope"), 404)]
)
async def test_empty_bi5_is_zero_byte_payload(answer: HttpResponse, status: int) -> None:
    transport = FakeTransport({BI5_URL: [answer]})
    [out] = await make(transport).process([Rec(fetch_unit())])
    assert out.topic == "tickpipe.raw-payloads"
    assert out.value == b""
    meta = RawPayloadMeta.from_headers(out.headers)
    assert meta.sha256 == hashlib.sha256(b"").hexdigest()
    assert meta.http_status == status
    assert meta.attempts == 1


async def test_json_404_is_failure() -> None:
    url = f"{JSON_BASE}/ticks/EUR-USD/2019/2/4/5"
    transport = FakeTransport({url: [HttpResponse(404, b"")]})
    [out] = await make(transport).process([Rec(fetch_unit(source="dukascopy-json"))])
    assert out.topic == "tickpipe.failures"
    assert "HTTP 404" in str(failures[0][1])


@pytest.mark.parametrize("value", [b"{not json", None, b'{"request_id": "x"}'])
async def test_bad_fetch_unit_is_failure(value: bytes | None) -> None:
    transport = FakeTransport({})
    [out] = await make(transport).process([Rec(value)])
    assert out.topic == "tickpipe.failures"
    [(_, error, attempts)] = failures
    assert attempts == 1 and isinstance(error, ValueError)
    assert "not a fetch unit record" in str(error)
    assert transport.calls == []


async def test_unconfigured_source_is_failure() -> None:
    value = json.loads(fetch_unit())
    value["source"] = "polygon"
    await make(FakeTransport({})).process([Rec(json.dumps(value).encode())])
    [(_, error, attempts)] = failures
    assert attempts == 1
    assert str(error) == "source 'polygon' is not configured on this fetcher"


async def test_concurrency_limited_and_order_kept() -> None:
    starts = [T0 + i * HOUR for i in range(10)]
    downloader = make(FakeTransport({}), concurrency=3)
    script = {
        DukascopyBi5(BI5_BASE).url_for(
            FetchUnit("r", Unit("dukascopy-bi5", "EURUSD", "ticks", s, s + HOUR), "EURUSD", 5), 0
        ): [ok(LZMA_BODY + bytes([i]))]
        for i, s in enumerate(starts)
    }
    transport = FakeTransport(script, latency=0.005)
    downloader.transport = transport
    outs = await downloader.process([Rec(fetch_unit(s)) for s in starts])
    assert transport.max_active == 3
    assert [o.value[-1] for o in outs] == list(range(10))
    assert [RawPayloadMeta.from_headers(o.headers).unit.start_ms for o in outs] == starts


async def test_mixed_batch_keeps_order() -> None:
    good, bad = T0, T0 + HOUR
    bad_url = f"{BI5_BASE}/EURUSD/2019/01/04/06h_ticks.bi5"
    transport = FakeTransport({BI5_URL: [ok()], bad_url: [HttpResponse(403, b"")]})
    outs = await make(transport).process([Rec(fetch_unit(bad)), Rec(fetch_unit(good))])
    assert [o.topic for o in outs] == ["tickpipe.failures", "tickpipe.raw-payloads"]


async def test_open_json_hour_uses_from_form() -> None:
    start = int(NOW * 1000) - int(NOW * 1000) % HOUR
    url = f"{JSON_BASE}/ticks/EUR-USD?from={start}"
    transport = FakeTransport({url: [ok(JSON_BODY)]})
    [out] = await make(transport).process([Rec(fetch_unit(start, source="dukascopy-json"))])
    assert RawPayloadMeta.from_headers(out.headers).url == url


async def test_patching_http_sleep_takes_effect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # drop the autouse patches: only the documented hook
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr("tickpipe_fetcher.http.sleep", fake_sleep)
    transport = FakeTransport({BI5_URL: [HttpResponse(503, b""), ok()]})
    settings = Settings(fetch_attempts=2, fetch_delayed_retries=0)
    d = Downloader(
        settings,
        {"dukascopy-bi5": DukascopyBi5(BI5_BASE)},
        transport,
        failure,
        policy=RetryPolicy(attempts=2, base_s=0.01, max_s=0.01),
    )
    await d.process([Rec(fetch_unit())])
    assert len(waits) == 1


# --- suspect-empty ----------------------------------------------------------------------------

JSON_EMPTY = (
    b'{"timestamp":1549256400000,"multiplier":1.0E-5,"ask":null,"bid":null,"times":[],'
    b'"asks":[],"bids":[],"askVolumes":[],"bidVolumes":[]}'
)


def units_counted(outcome: str) -> float:
    return (
        REGISTRY.get_sample_value("tickpipe_units_total", {"stage": "fetcher", "outcome": outcome})
        or 0.0
    )


async def test_empty_answer_for_open_market_retried_then_published_flagged(
    no_wait: list[float],
) -> None:
    transport = FakeTransport({BI5_URL: [HttpResponse(200, b"")]})
    downloader = make(transport, attempts=3)
    before = units_counted("suspect-empty")
    with capture_logs() as logs:
        [out] = await downloader.process([Rec(fetch_unit(market_open=True))])
    assert out.topic == "tickpipe.raw-payloads" and out.value == b""
    meta = RawPayloadMeta.from_headers(out.headers)
    assert (meta.suspect_empty, meta.attempts) == (1, 3)
    assert len(transport.calls) == 3 and len(no_wait) == 2  # retried with backoff
    assert failures == []
    assert units_counted("suspect-empty") == before + 1
    retries = [e for e in logs if e["event"] == "download failed, retrying"]
    assert [e["error"] for e in retries] == [
        f"empty answer for an hour the trading schedule has open: {BI5_URL}"
    ] * 2
    # The host answered every time: no failure for its breaker.
    assert downloader.breakers.for_host("datafeed.test").last_error == ""


async def test_empty_answer_for_open_market_then_data() -> None:
    transport = FakeTransport({BI5_URL: [HttpResponse(404, b"nope"), ok()]})
    [out] = await make(transport).process([Rec(fetch_unit(market_open=True))])
    meta = RawPayloadMeta.from_headers(out.headers)
    assert (out.value, meta.suspect_empty, meta.attempts) == (LZMA_BODY, 0, 2)


@pytest.mark.parametrize("market_open", [False, None], ids=["closed", "unknown"])
async def test_empty_answer_for_closed_or_unknown_market_published_at_once(
    market_open: bool | None, no_wait: list[float]
) -> None:
    transport = FakeTransport({BI5_URL: [HttpResponse(200, b"")]})
    before = units_counted("empty")
    [out] = await make(transport).process([Rec(fetch_unit(market_open=market_open))])
    meta = RawPayloadMeta.from_headers(out.headers)
    assert (out.value, meta.suspect_empty, meta.attempts) == (b"", 0, 1)
    assert no_wait == [] and units_counted("empty") == before + 1


async def test_json_empty_bucket_is_suspect_when_open_and_published_as_served() -> None:
    url = f"{JSON_BASE}/ticks/EUR-USD/2019/2/4/5"
    transport = FakeTransport({url: [ok(JSON_EMPTY, content_type="application/json")]})
    [out] = await make(transport, attempts=2).process(
        [Rec(fetch_unit(source="dukascopy-json", market_open=True))]
    )
    meta = RawPayloadMeta.from_headers(out.headers)
    assert out.value == JSON_EMPTY  # the body as served, not a 0-byte payload
    assert (meta.suspect_empty, meta.attempts, meta.format) == (1, 2, "dukascopy-json-ticks")
    assert len(transport.calls) == 2


async def test_candle_unit_uses_candle_url_and_format() -> None:
    day = int(datetime(2019, 2, 4, tzinfo=UTC).timestamp() * 1000)
    unit = FetchUnit(
        "r", Unit("dukascopy-bi5", "EURUSD", "candles:1m:ask", day, day + 24 * HOUR), "EURUSD", 5
    )
    url = f"{BI5_BASE}/EURUSD/2019/01/04/ASK_candles_min_1.bi5"
    transport = FakeTransport({url: [ok()]})
    [out] = await make(transport).process([Rec(unit.to_json())])
    meta = RawPayloadMeta.from_headers(out.headers)
    assert (meta.url, meta.format, meta.unit.kind) == (
        url,
        "dukascopy-bi5-candles",
        "candles:1m:ask",
    )
    assert out.key == b"dukascopy-bi5|EURUSD|candles:1m:ask|2019-02-04T00:00:00Z"


async def test_unit_that_is_not_one_span_is_a_permanent_failure() -> None:
    unit = FetchUnit(
        "r", Unit("dukascopy-bi5", "EURUSD", "candles:1m:bid", T0, T0 + HOUR), "EURUSD", 5
    )
    transport = FakeTransport({})
    [out] = await make(transport).process([Rec(unit.to_json())])
    assert out.topic == "tickpipe.failures" and transport.calls == []
    assert "is not one whole candles:1m:bid unit" in str(failures[0][1])


async def test_fetched_at_is_when_the_attempt_asked_not_when_it_was_published() -> None:
    """A request held back by admission (rate limiter, slots) or a slow answer must not make
    the payload look newer than what was asked for: ``fetched_at`` decides whether a unit had
    closed (resume skips it) and which candles were complete."""
    wall = [NOW]

    class SlowTransport(FakeTransport):
        async def get(self, url: str, headers: Mapping[str, str] | None = None) -> HttpResponse:
            wall[0] += 90.0  # the answer comes 90 s after the attempt started
            return await super().get(url, headers)

    transport = SlowTransport({BI5_URL: [ok()]})
    d = Downloader(
        Settings(fetch_attempts=2, fetch_delayed_retries=0),
        {"dukascopy-bi5": DukascopyBi5(BI5_BASE)},
        transport,
        failure,
        clock=lambda: wall[0],
        monotonic=monotonic,
    )
    (out,) = await d.process([Rec(fetch_unit())])
    meta = RawPayloadMeta.from_headers(out.headers)
    assert meta.fetched_at_ms == int(NOW * 1000)
    assert wall[0] == NOW + 90.0


async def test_units_of_a_cancelled_request_are_skipped_not_downloaded() -> None:
    from tickpipe_fetcher.cancellations import CancellationRegistry
    from tickpipe_shared.wire.request_events import CANCELLED_ERROR_CLASS

    registry = CancellationRegistry(Settings())
    registry._task = asyncio.get_running_loop().create_future()  # type: ignore[assignment]
    registry.add("req-42")  # what following request-cancellations does
    transport = FakeTransport({BI5_URL: [ok()]})
    d = make(transport)
    d.cancelled = registry.is_cancelled
    await d.process([Rec(fetch_unit())])
    assert transport.calls == []
    [(_, error, attempts)] = failures
    assert type(error).__name__ == CANCELLED_ERROR_CLASS and attempts == 0
    assert "req-42 was cancelled" in str(error)
    registry._task.cancel()  # type: ignore[union-attr]
