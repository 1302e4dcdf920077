"""The Polygon aggregates source: URLs, paging, auth and errors, against a fake transport.

Self-made pages run anywhere; the recorded captures of ``../shared/data/polygon`` are used
where present (those tests skip without them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs
from support.shared_data import SHARED_MISSING, locate_shared_dir
from tickpipe_fetcher.downloader import Downloader
from tickpipe_fetcher.http import HttpResponse, PermanentFetchError, RetryableFetchError
from tickpipe_fetcher.sources.polygon import PolygonSource, polygon_range
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.records import OutRecord
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.fetch_units import FetchUnit
from tickpipe_shared.wire.raw import RawPayloadMeta

KEY = "pk_live_SECRET123"
BASE = "https://polygon.test"
DAY_MS = 86_400_000
JULY_31 = int(datetime(2023, 7, 31, tzinfo=UTC).timestamp() * 1000)
FIRST = (
    f"{BASE}/v2/aggs/ticker/AAPL/range/1/minute/{JULY_31}/{JULY_31 + DAY_MS - 1}"
    "?adjusted=true&sort=asc&limit=50000"
)
NEXT_PATH = "/v2/aggs/ticker/AAPL/range/1/minute/1690791480000/2023-07-31?cursor=bGltaXQ9MTA"
PAGE_1 = (
    b'{"ticker":"AAPL","queryCount":1,"resultsCount":1,"adjusted":true,"results":[{"v":4428,'
    b'"o":195.89,"c":195.53,"h":195.9,"l":195.53,"t":1690790400000,"n":121}],"status":"OK",'
    b'"request_id":"a1","count":1,"next_url":"https://api.polygon.io' + NEXT_PATH.encode() + b'"}'
)
PAGE_2 = (
    b'{"ticker":"AAPL","queryCount":1,"resultsCount":1,"adjusted":true,"results":[{"v":674,'
    b'"o":195.67,"c":195.7,"h":195.7,"l":195.67,"t":1690791480000,"n":44}],"status":"OK",'
    b'"request_id":"a2","count":1}'
)
NO_RESULTS = b'{"ticker":"AAPL","queryCount":0,"resultsCount":0,"status":"OK","request_id":"e"}'
NULL_RESULTS = b'{"ticker":"AAPL","results":null,"status":"OK","request_id":"n","count":0}'


def polygon_dir() -> Path:
    shared = locate_shared_dir()
    if shared is None or not (shared / "data" / "polygon").is_dir():
        pytest.skip(SHARED_MISSING)
    return shared / "data" / "polygon"


def source(key: str | None = KEY, **kw: Any) -> PolygonSource:
    return PolygonSource(BASE, SecretStr(key) if key else None, **kw)


def unit(kind: str = "candles:1m:trade", start: int = JULY_31, end: int = JULY_31 + DAY_MS,
         ticker: str = "AAPL", market_open: bool | None = None) -> FetchUnit:  # fmt: skip
    return FetchUnit(
        "req-p", Unit("polygon", ticker, kind, start, end), ticker, -1, "stock", market_open
    )


def ok(body: bytes, **headers: str) -> HttpResponse:
    extra = {k.replace("_", "-"): v for k, v in headers.items()}
    return HttpResponse(200, body, {"content-type": "application/json", **extra})


@dataclass
class FakeTransport:
    """Scripted answers per URL (the last one repeats); records URLs and headers."""

    script: dict[str, list[HttpResponse]]
    calls: list[tuple[str, Mapping[str, str] | None]] = field(default_factory=list)

    async def get(self, url: str, headers: Mapping[str, str] | None = None) -> HttpResponse:
        self.calls.append((url, headers))
        answers = self.script[url]
        return answers.pop(0) if len(answers) > 1 else answers[0]


@dataclass
class Rec:
    value: bytes | None
    key: bytes | None = b"k"
    topic: str = "tickpipe.fetch-units"
    partition: int = 0
    offset: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


failures: list[BaseException] = []


def downloader(transport: FakeTransport, src: PolygonSource | None = None,
               attempts: int = 3) -> Downloader:  # fmt: skip
    failures.clear()

    def failure(record: Any, error: BaseException, n: int) -> OutRecord:
        failures.append(error)
        return OutRecord("tickpipe.failures", record.key, str(error).encode())

    settings = Settings(fetch_attempts=attempts, fetch_rate_per_host=0)
    return Downloader(settings, {"polygon": src or source()}, transport, failure,
                      clock=lambda: 1.8e9)  # fmt: skip


@pytest.fixture(autouse=True)
def no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fake_sleep(seconds: float) -> None:
        return None

    monkeypatch.setattr("tickpipe_fetcher.http.sleep", fake_sleep)


# --- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("candles:1s:trade", (1, "second")),
        ("candles:5m:trade", (5, "minute")),
        ("candles:60m:trade", (1, "hour")),
        ("candles:4h:trade", (4, "hour")),
        ("candles:1d:trade", (1, "day")),
        ("candles:1w:trade", (1, "week")),
        ("candles:1mo:trade", (1, "month")),
        ("candles:1q:trade", (1, "quarter")),
        ("candles:1y:trade", (1, "year")),
    ],
)
def test_timeframe_to_multiplier_and_timespan(kind: str, expected: tuple[int, str]) -> None:
    assert polygon_range(kind) == expected


@pytest.mark.parametrize("kind", ["ticks", "candles:1m:bid", "candles:1x:trade"])
def test_kinds_polygon_does_not_serve(kind: str) -> None:
    with pytest.raises(PermanentFetchError, match="kind"):
        polygon_range(kind)


def test_first_url_has_inclusive_ms_bounds_and_no_key() -> None:
    assert source().url_for(unit()) == FIRST
    day = int(datetime(2023, 1, 1, tzinfo=UTC).timestamp() * 1000)
    year = unit("candles:1d:trade", day, day + 365 * DAY_MS, "C:EURUSD")
    url = source(page_limit=10).url_for(year)
    assert url == (
        f"{BASE}/v2/aggs/ticker/C:EURUSD/range/1/day/{day}/{day + 365 * DAY_MS - 1}"
        "?adjusted=true&sort=asc&limit=10"
    )
    assert KEY not in url


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://127.0.0.1:8765", f"http://127.0.0.1:8765{NEXT_PATH}"),
        ("https://api.massive.com/", f"https://api.massive.com{NEXT_PATH}"),
        ("http://proxy.test/polygon", f"http://proxy.test/polygon{NEXT_PATH}"),
    ],
)
def test_next_url_moves_to_the_configured_base(base: str, expected: str) -> None:
    assert PolygonSource(base).follow(f"https://api.polygon.io{NEXT_PATH}") == expected
    assert PolygonSource(base).follow(NEXT_PATH) == expected  # a relative next_url too


# --- paging through the downloader ------------------------------------------------------------


async def test_pages_followed_with_bearer_on_every_page() -> None:
    second = f"{BASE}{NEXT_PATH}"
    transport = FakeTransport({FIRST: [ok(PAGE_1)], second: [ok(PAGE_2)]})
    with capture_logs() as logs:
        [out] = await downloader(transport).process([Rec(unit().to_json())])
    assert [u for u, _ in transport.calls] == [FIRST, second]
    assert [h for _, h in transport.calls] == [{"Authorization": f"Bearer {KEY}"}] * 2
    assert out.value == b"[" + PAGE_1 + b"," + PAGE_2 + b"]"
    assert [p["request_id"] for p in json.loads(out.value)] == ["a1", "a2"]
    meta = RawPayloadMeta.from_headers(out.headers)
    assert (meta.format, meta.url, meta.price_scale, meta.attempts, meta.suspect_empty) == (
        "polygon-aggs", FIRST, -1, 1, 0,
    )  # fmt: skip
    assert (meta.source_code, meta.asset_class) == ("AAPL", "stock")
    assert not any(KEY in str(e) for e in logs)


async def test_recorded_paginated_capture_is_followed() -> None:
    page = polygon_dir() / "aggs_AAPL_1_minute_2023-07-31_limit10_page1_next_url.json"
    body = page.read_bytes()
    next_url = json.loads(body)["next_url"]
    assert next_url.startswith("https://api.polygon.io/")
    second = f"{BASE}{next_url.removeprefix('https://api.polygon.io')}"
    transport = FakeTransport({FIRST: [ok(body)], second: [ok(NO_RESULTS)]})
    [out] = await downloader(transport).process([Rec(unit().to_json())])
    assert [u for u, _ in transport.calls] == [FIRST, second]
    pages = json.loads(out.value)
    assert len(pages) == 2 and len(pages[0]["results"]) == 10 and "results" not in pages[1]
    assert out.value == b"[" + body + b"," + NO_RESULTS + b"]"  # bodies untouched


def test_recorded_captures_read_as_pages() -> None:
    root = polygon_dir()
    for path in sorted(root.glob("aggs_*.json")):
        page = source().read_page("u", ok(path.read_bytes()))
        assert page.has_results, path.name
    error = root / "error_NOT_AUTHORIZED_aggs_AAPL_1_day_2024-12-31_2024-12-31.json"
    with pytest.raises(PermanentFetchError, match=r"HTTP 403 NOT_AUTHORIZED from u: Your plan"):
        source().read_page("u", HttpResponse(403, error.read_bytes()))


async def test_no_key_configured_sends_no_header() -> None:
    transport = FakeTransport({FIRST: [ok(PAGE_2)]})
    await downloader(transport, source(key=None)).process([Rec(unit().to_json())])
    assert transport.calls == [(FIRST, None)]


@pytest.mark.parametrize("pages", [[NO_RESULTS], [NULL_RESULTS], [NO_RESULTS.replace(
    b'"status"', b'"results":[],"status"')]], ids=["absent", "null", "empty-list"])  # fmt: skip
async def test_no_results_is_an_empty_unit(pages: Sequence[bytes]) -> None:
    transport = FakeTransport({FIRST: [ok(pages[0])]})
    [out] = await downloader(transport).process([Rec(unit().to_json())])
    meta = RawPayloadMeta.from_headers(out.headers)
    assert out.value == b"[" + pages[0] + b"]" and meta.suspect_empty == 0


async def test_empty_unit_of_an_open_market_is_retried_then_flagged() -> None:
    transport = FakeTransport({FIRST: [ok(NO_RESULTS)]})
    [out] = await downloader(transport, attempts=2).process(
        [Rec(unit(ticker="AAPL", market_open=True).to_json())]
    )
    meta = RawPayloadMeta.from_headers(out.headers)
    assert (meta.suspect_empty, meta.attempts, len(transport.calls)) == (1, 2, 2)


async def test_empty_first_page_then_results_is_not_empty() -> None:
    page_1 = NO_RESULTS[:-1] + b',"next_url":"https://api.polygon.io' + NEXT_PATH.encode() + b'"}'
    transport = FakeTransport({FIRST: [ok(page_1)], f"{BASE}{NEXT_PATH}": [ok(PAGE_2)]})
    [out] = await downloader(transport).process([Rec(unit(market_open=True).to_json())])
    meta = RawPayloadMeta.from_headers(out.headers)
    assert (meta.suspect_empty, meta.attempts, len(json.loads(out.value))) == (0, 1, 2)


async def test_a_page_that_fails_retries_the_unit_from_the_first_page() -> None:
    second = f"{BASE}{NEXT_PATH}"
    transport = FakeTransport(
        {FIRST: [ok(PAGE_1)], second: [HttpResponse(502, b"bad gateway"), ok(PAGE_2)]}
    )
    [out] = await downloader(transport).process([Rec(unit().to_json())])
    assert [u for u, _ in transport.calls] == [FIRST, second, FIRST, second]
    assert RawPayloadMeta.from_headers(out.headers).attempts == 2
    assert out.value == b"[" + PAGE_1 + b"," + PAGE_2 + b"]"


async def test_page_cap() -> None:
    def page(n: int) -> bytes:
        return NO_RESULTS[:-1] + f',"next_url":"https://x/v2/p?cursor={n}"}}'.encode()

    script = {FIRST: [ok(page(0))]} | {f"{BASE}/v2/p?cursor={n}": [ok(page(n + 1))]
                                       for n in range(10)}  # fmt: skip
    transport = FakeTransport(script)
    [out] = await downloader(transport, source(max_pages=5)).process([Rec(unit().to_json())])
    assert out.topic == "tickpipe.failures" and len(transport.calls) == 5
    assert "more than 5 pages" in str(failures[0])


async def test_next_url_loop_is_permanent() -> None:
    looping = NO_RESULTS[:-1] + b',"next_url":"https://api.polygon.io/v2/p?cursor=same"}'
    transport = FakeTransport({FIRST: [ok(looping)], f"{BASE}/v2/p?cursor=same": [ok(looping)]})
    [out] = await downloader(transport).process([Rec(unit().to_json())])
    assert out.topic == "tickpipe.failures" and "the pages loop" in str(failures[0])


# --- errors -----------------------------------------------------------------------------------

NOT_AUTHORIZED = (
    b'{"status":"NOT_AUTHORIZED","request_id":"dd","message":"You are not entitled to this '
    b'data. Please upgrade your plan at https://polygon.io/pricing"}'
)


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        (HttpResponse(403, NOT_AUTHORIZED), PermanentFetchError,
         "HTTP 403 NOT_AUTHORIZED from u: You are not entitled to this data"),
        (HttpResponse(401, b'{"status":"ERROR","request_id":"x","error":"Unknown API Key"}'),
         PermanentFetchError, "HTTP 401 ERROR from u: Unknown API Key (check TICKPIPE_POLYGON"),
        (HttpResponse(400, b'{"status":"ERROR","error":"Could not parse the time parameter"}'),
         PermanentFetchError, "HTTP 400 ERROR from u: Could not parse the time parameter"),
        (HttpResponse(404, b'{"status":"NOT_FOUND","message":"Route not found"}'),
         PermanentFetchError, "HTTP 404 NOT_FOUND from u: Route not found"),
        (ok(b'{"status":"NOT_AUTHORIZED","message":"plan"}'), PermanentFetchError,
         "status 'NOT_AUTHORIZED' from u: plan"),
        (ok(b'{"status":"ERROR","error":"internal"}'), RetryableFetchError,
         "status 'ERROR' from u: internal"),
        (ok(b'{"results":[]}'), RetryableFetchError, "status None from u"),
        (ok(b'{"status":"OK","results":{"t":1}}'), RetryableFetchError, "'results' from u is not"),
        (ok(b'{"status":"OK","results":[],"next_url":5}'), RetryableFetchError, "'next_url'"),
        (ok(b"[1, 2]"), RetryableFetchError, "not a JSON object"),
        (ok(b""), RetryableFetchError, "empty body"),
        (ok(b'{"status":"OK","results":[{"t":1'), RetryableFetchError, "not JSON or truncated"),
        (ok(PAGE_2, content_length=str(len(PAGE_2) + 10)), RetryableFetchError, "truncated body"),
        (HttpResponse(200, b"<!DOCTYPE html><html>maintenance</html>",
                      {"content-type": "text/html"}), RetryableFetchError, "HTML page"),
    ],
)  # fmt: skip
def test_page_errors(response: HttpResponse, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        source().read_page("u", response)


@pytest.mark.parametrize("status", [413, 429, 499, 500, 502, 503, 504, 408])
def test_transient_statuses_are_retryable(status: int) -> None:
    with pytest.raises(RetryableFetchError, match=f"HTTP {status} from u") as info:
        source().read_page("u", HttpResponse(status, b"busy", {"retry-after": "12"}))
    assert info.value.retry_after == 12.0


def test_delayed_status_is_data() -> None:
    page = source().read_page("u", ok(PAGE_2.replace(b'"OK"', b'"DELAYED"')))
    assert page.has_results and page.next_url is None


async def test_403_fails_the_unit_at_once_with_the_message() -> None:
    transport = FakeTransport({FIRST: [HttpResponse(403, NOT_AUTHORIZED)]})
    [out] = await downloader(transport).process([Rec(unit().to_json())])
    assert out.topic == "tickpipe.failures" and len(transport.calls) == 1
    assert "NOT_AUTHORIZED" in str(failures[0]) and "upgrade your plan" in str(failures[0])


async def test_key_never_in_urls_logs_or_errors_even_when_echoed() -> None:
    echo = json.dumps({"status": "ERROR", "error": f"Unknown API Key {KEY}"}).encode()
    transport = FakeTransport({FIRST: [HttpResponse(401, echo)]})
    with capture_logs() as logs:
        [out] = await downloader(transport).process([Rec(unit().to_json())])
    assert all(KEY not in url for url, _ in transport.calls)
    assert KEY not in str(failures[0]) and KEY not in out.value.decode()
    assert "Unknown API Key ***" in str(failures[0])
    assert not any(KEY in str(e) for e in logs)
    assert KEY not in repr(source())


def test_a_bar_straddling_the_units_end_is_asked_for_its_whole_span() -> None:
    from tickpipe_decoder.formats.polygon import decode_polygon_aggs
    from tickpipe_fetcher.sources.polygon import bar_span_end

    day = int(datetime(2023, 7, 31, tzinfo=UTC).timestamp() * 1000)
    seven = 7 * 60_000
    # 1440 minutes are not a multiple of 7: the bar opening at 23:55 (on the epoch grid) ends
    # at 00:02 the next day.
    last_open = day + DAY_MS - (day + DAY_MS) % seven
    assert bar_span_end("candles:7m:trade", day + DAY_MS) == last_open + seven
    url = source().url_for(unit("candles:7m:trade", day, day + DAY_MS))
    assert f"/range/7/minute/{day}/{last_open + seven - 1}?" in url
    # Aligned timeframes keep the unit's own bounds (and the recorded captures' URLs).
    assert bar_span_end("candles:1m:trade", day + DAY_MS) == day + DAY_MS
    assert bar_span_end("candles:1mo:trade", day + DAY_MS) == day + DAY_MS
    # What comes back for the extended range: the straddling bar whole, and the next one
    # (opening after the unit), which the decoder drops; as is the bar opening before the unit.
    bars = [(day - seven + 60_000, 1.0), (last_open, 2.0), (last_open + seven, 3.0)]
    results = [{"t": t, "o": p, "h": p, "l": p, "c": p, "v": 1} for t, p in bars]
    body = json.dumps([{"status": "OK", "results": results}]).encode()
    decoded = decode_polygon_aggs(body, day, day + DAY_MS, "AAPL")
    assert [int(t) for t in decoded.candles.ts_ms] == [last_open]
