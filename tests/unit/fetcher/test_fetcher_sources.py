"""Source adapters: URLs and what each HTTP answer means (no network)."""

from __future__ import annotations

import lzma
from datetime import UTC, datetime

import pytest
from tickpipe_fetcher.http import HttpResponse, PermanentFetchError, RetryableFetchError
from tickpipe_fetcher.sources import DukascopyBi5, DukascopyJson, Outcome
from tickpipe_shared.wire.fetch_units import FetchUnit

HOUR = 3_600_000
BI5 = DukascopyBi5("https://datafeed.test/datafeed/")
JSON = DukascopyJson("https://json.test/v1/")
LZMA_BODY = lzma.compress(b"\0" * 20, format=lzma.FORMAT_ALONE)


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def unit(start: int, source: str = "dukascopy-bi5", code: str = "EURUSD") -> FetchUnit:
    return FetchUnit("r", source, "EURUSD", "ticks", start, start + HOUR, code, 5)


# --- URLs -------------------------------------------------------------------------------------


def test_bi5_url_zero_based_month() -> None:
    url = BI5.url_for(unit(ms(2019, 2, 4, 5)), now_ms=ms(2026, 1, 1))
    assert url == "https://datafeed.test/datafeed/EURUSD/2019/01/04/05h_ticks.bi5"


@pytest.mark.parametrize(
    ("start", "path"),
    [
        ((2019, 1, 1, 0), "2019/00/01/00h"),
        ((2020, 12, 31, 23), "2020/11/31/23h"),
        ((2003, 5, 4, 21), "2003/04/04/21h"),
    ],
)
def test_bi5_url_edges(start: tuple[int, ...], path: str) -> None:
    url = BI5.url_for(unit(ms(*start)), now_ms=0)
    assert url == f"https://datafeed.test/datafeed/EURUSD/{path}_ticks.bi5"


def test_json_url_closed_hour() -> None:
    u = unit(ms(2026, 7, 13, 12), "dukascopy-json", "EUR-USD")
    url = JSON.url_for(u, now_ms=ms(2026, 7, 13, 13))  # hour ended exactly now: closed
    assert url == "https://json.test/v1/ticks/EUR-USD/2026/7/13/12"


def test_json_url_not_zero_padded() -> None:
    u = unit(ms(2019, 2, 4, 5), "dukascopy-json", "USA500.IDX-USD")
    assert (
        JSON.url_for(u, now_ms=ms(2026, 1, 1))
        == "https://json.test/v1/ticks/USA500.IDX-USD/2019/2/4/5"
    )


def test_json_url_open_hour() -> None:
    start = ms(2026, 7, 13, 12)
    u = unit(start, "dukascopy-json", "EUR-USD")
    url = JSON.url_for(u, now_ms=start + 1_000)
    assert url == f"https://json.test/v1/ticks/EUR-USD?from={start}"


def test_names_and_formats() -> None:
    assert (BI5.name, BI5.format) == ("dukascopy-bi5", "dukascopy-bi5-ticks")
    assert (JSON.name, JSON.format) == ("dukascopy-json", "dukascopy-json-ticks")


# --- classification ---------------------------------------------------------------------------

URL = "https://x.test/file"


def resp(status: int, body: bytes = b"", **headers: str) -> HttpResponse:
    return HttpResponse(status, body, {k.replace("_", "-"): v for k, v in headers.items()})


def test_bi5_data() -> None:
    assert BI5.classify(URL, resp(200, LZMA_BODY)) is Outcome.DATA
    ok = resp(200, LZMA_BODY, content_length=str(len(LZMA_BODY)))
    assert BI5.classify(URL, ok) is Outcome.DATA


@pytest.mark.parametrize(
    "response", [resp(200, b""), resp(404, b"not found")], ids=["0-byte", "404"]
)
def test_bi5_empty(response: HttpResponse) -> None:
    assert BI5.classify(URL, response) is Outcome.EMPTY


def test_json_data() -> None:
    body = b'{"timestamp": 1, "multiplier": 0.00001, "times": []}\n'
    assert JSON.classify(URL, resp(200, body, content_type="application/json")) is Outcome.DATA


def test_json_404_permanent() -> None:
    with pytest.raises(PermanentFetchError, match=f"HTTP 404 from {URL}"):
        JSON.classify(URL, resp(404, b"{}"))


@pytest.mark.parametrize("source", [BI5, JSON], ids=["bi5", "json"])
def test_429_retryable_with_retry_after(source: DukascopyBi5 | DukascopyJson) -> None:
    with pytest.raises(RetryableFetchError, match=f"HTTP 429 from {URL}") as info:
        source.classify(URL, resp(429, b"slow down", retry_after="7"))
    assert info.value.retry_after == 7.0


@pytest.mark.parametrize("source", [BI5, JSON], ids=["bi5", "json"])
@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_5xx_retryable(source: DukascopyBi5 | DukascopyJson, status: int) -> None:
    with pytest.raises(RetryableFetchError, match=f"HTTP {status}") as info:
        source.classify(URL, resp(status))
    assert info.value.retry_after is None


def test_retry_after_http_date_ignored() -> None:
    with pytest.raises(RetryableFetchError) as info:
        BI5.classify(URL, resp(503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"))
    assert info.value.retry_after is None


@pytest.mark.parametrize("source", [BI5, JSON], ids=["bi5", "json"])
@pytest.mark.parametrize("status", [400, 401, 403, 410])
def test_4xx_permanent(source: DukascopyBi5 | DukascopyJson, status: int) -> None:
    with pytest.raises(PermanentFetchError, match=f"HTTP {status} from {URL}"):
        source.classify(URL, resp(status, b"denied"))


HTML = b"<!DOCTYPE html><html><head><title>Oops</title></head><body>x</body></html>"
CHALLENGE = b"<html><head><title>Just a moment...</title></head><body>cf-chl</body></html>"


@pytest.mark.parametrize("source", [BI5, JSON], ids=["bi5", "json"])
def test_html_page_retryable(source: DukascopyBi5 | DukascopyJson) -> None:
    with pytest.raises(
        RetryableFetchError, match=r"HTML page \(\d+ bytes, content-type text/html\)"
    ):
        source.classify(URL, resp(200, HTML, content_type="text/html; charset=utf-8"))
    with pytest.raises(RetryableFetchError, match="content-type none"):
        source.classify(URL, resp(200, b"  \n" + HTML))


@pytest.mark.parametrize("source", [BI5, JSON], ids=["bi5", "json"])
def test_cloudflare_challenge_retryable(source: DukascopyBi5 | DukascopyJson) -> None:
    with pytest.raises(RetryableFetchError, match="anti-bot challenge page instead of data"):
        source.classify(URL, resp(200, CHALLENGE, content_type="application/octet-stream"))


@pytest.mark.parametrize(
    ("source", "body"), [(BI5, LZMA_BODY), (JSON, b'{"times": []}')], ids=["bi5", "json"]
)
def test_truncated_body_retryable(source: DukascopyBi5 | DukascopyJson, body: bytes) -> None:
    declared = str(len(body) + 100)
    with pytest.raises(
        RetryableFetchError, match=f"truncated body from {URL}: {len(body)} of {declared} bytes"
    ):
        source.classify(URL, resp(200, body, content_length=declared))


def test_bi5_zero_bytes_with_nonzero_content_length_is_retryable() -> None:
    with pytest.raises(RetryableFetchError, match="truncated"):
        BI5.classify(URL, resp(200, b"", content_length="1234"))


def test_bi5_non_lzma_retryable() -> None:
    with pytest.raises(RetryableFetchError, match=r"not an LZMA stream from .*: first bytes b'PK"):
        BI5.classify(URL, resp(200, b"PK\x03\x04zipzip"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty body"),
        (b"   \n", "empty body"),
        (b"[1,2]", "not JSON"),
        (b'{"times": [1, 2', "truncated JSON"),
    ],
)
def test_json_not_an_object_retryable(body: bytes, message: str) -> None:
    with pytest.raises(RetryableFetchError, match=message):
        JSON.classify(URL, resp(200, body))


def test_errors_scrub_secrets_from_url() -> None:
    secret_url = "https://u:pw@x.test/v1/ticks?apiKey=SECRET"
    with pytest.raises(RetryableFetchError) as info:
        JSON.classify(secret_url, resp(503))
    assert "SECRET" not in str(info.value) and ":pw@" not in str(info.value)
