"""Source adapters: URLs and what each HTTP answer means (no network)."""

from __future__ import annotations

import lzma
from datetime import UTC, datetime

import pytest
from tickpipe_fetcher.http import HttpResponse, PermanentFetchError, RetryableFetchError
from tickpipe_fetcher.sources import DukascopyBi5, DukascopyJson, Outcome
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.fetch_units import FetchUnit

HOUR = 3_600_000
BI5 = DukascopyBi5("https://datafeed.test/datafeed/")
JSON = DukascopyJson("https://json.test/v1/")
LZMA_BODY = lzma.compress(b"\0" * 20, format=lzma.FORMAT_ALONE)


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def unit(start: int, source: str = "dukascopy-bi5", code: str = "EURUSD") -> FetchUnit:
    return FetchUnit("r", Unit(source, "EURUSD", "ticks", start, start + HOUR), code, 5)


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


def test_names_hosts_and_formats() -> None:
    assert (BI5.name, BI5.host) == ("dukascopy-bi5", "datafeed.test")
    assert (JSON.name, JSON.host) == ("dukascopy-json", "json.test")
    assert BI5.format_for("ticks") == "dukascopy-bi5-ticks"
    assert BI5.format_for("candles:1h:ask") == "dukascopy-bi5-candles"
    assert JSON.format_for("ticks") == "dukascopy-json-ticks"
    assert JSON.format_for("candles:1d:bid") == "dukascopy-json-candles"


# --- candle URLs ------------------------------------------------------------------------------

DAY = 24 * HOUR


def candles(kind: str, start: int, end: int, source: str = "dukascopy-bi5") -> FetchUnit:
    code = "EURUSD" if source == "dukascopy-bi5" else "EUR-USD"
    return FetchUnit("r", Unit(source, "EURUSD", kind, start, end), code, 5)


@pytest.mark.parametrize(
    ("kind", "start", "end", "path"),
    [
        ("candles:1m:bid", (2019, 2, 4), (2019, 2, 5), "2019/01/04/BID_candles_min_1.bi5"),
        ("candles:1m:ask", (2019, 1, 1), (2019, 1, 2), "2019/00/01/ASK_candles_min_1.bi5"),
        ("candles:1m:bid", (2020, 12, 31), (2021, 1, 1), "2020/11/31/BID_candles_min_1.bi5"),
        ("candles:1h:bid", (2019, 1, 1), (2019, 2, 1), "2019/00/BID_candles_hour_1.bi5"),
        ("candles:1h:ask", (2019, 12, 1), (2020, 1, 1), "2019/11/ASK_candles_hour_1.bi5"),
        ("candles:1d:bid", (2018, 1, 1), (2019, 1, 1), "2018/BID_candles_day_1.bi5"),
        ("candles:1d:ask", (2019, 1, 1), (2020, 1, 1), "2019/ASK_candles_day_1.bi5"),
    ],
)
def test_bi5_candle_urls_zero_based_month(
    kind: str, start: tuple[int, int, int], end: tuple[int, int, int], path: str
) -> None:
    u = candles(kind, ms(*start), ms(*end))
    closed = BI5.url_for(u, now_ms=ms(2026, 1, 1))
    assert closed == f"https://datafeed.test/datafeed/EURUSD/{path}"
    # The datafeed has one name per file: an open period is asked the same way.
    assert BI5.url_for(u, now_ms=u.unit.start_ms + 1) == closed


@pytest.mark.parametrize(
    ("kind", "start", "end", "path"),
    [
        ("candles:1m:bid", (2026, 7, 10), (2026, 7, 11), "candles/minute/EUR-USD/BID/2026/7/10"),
        ("candles:1m:ask", (2019, 1, 1), (2019, 1, 2), "candles/minute/EUR-USD/ASK/2019/1/1"),
        ("candles:1h:bid", (2019, 2, 1), (2019, 3, 1), "candles/hour/EUR-USD/BID/2019/2"),
        ("candles:1h:ask", (2019, 12, 1), (2020, 1, 1), "candles/hour/EUR-USD/ASK/2019/12"),
        ("candles:1d:bid", (2019, 1, 1), (2020, 1, 1), "candles/day/EUR-USD/BID/2019"),
    ],
)
def test_json_candle_urls_closed(
    kind: str, start: tuple[int, int, int], end: tuple[int, int, int], path: str
) -> None:
    u = candles(kind, ms(*start), ms(*end), "dukascopy-json")
    assert JSON.url_for(u, now_ms=u.unit.end_ms) == f"https://json.test/v1/{path}"


@pytest.mark.parametrize(
    ("kind", "start", "end", "period", "side"),
    [
        ("candles:1m:bid", (2026, 7, 13), (2026, 7, 14), "minute", "BID"),
        ("candles:1h:ask", (2026, 7, 1), (2026, 8, 1), "hour", "ASK"),
        ("candles:1d:bid", (2026, 1, 1), (2027, 1, 1), "day", "BID"),
    ],
)
def test_json_candle_url_open_bucket(
    kind: str, start: tuple[int, int, int], end: tuple[int, int, int], period: str, side: str
) -> None:
    u = candles(kind, ms(*start), ms(*end), "dukascopy-json")
    url = JSON.url_for(u, now_ms=u.unit.end_ms - 1)
    assert url == f"https://json.test/v1/candles/{period}/EUR-USD/{side}?from={u.unit.start_ms}"


@pytest.mark.parametrize("kind", ["candles:5m:bid", "candles:1m:mid", "candles:1w:ask", "tick"])
@pytest.mark.parametrize("source", [BI5, JSON], ids=["bi5", "json"])
def test_kinds_dukascopy_does_not_serve(kind: str, source: DukascopyBi5 | DukascopyJson) -> None:
    with pytest.raises(PermanentFetchError, match="kind"):
        source.url_for(candles(kind, ms(2019, 2, 4), ms(2019, 2, 5)), now_ms=0)


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
    body = b'{"timestamp": 1, "multiplier": 0.00001, "bid": 1.1, "times": [5, 7]}\n'
    assert JSON.classify(URL, resp(200, body, content_type="application/json")) is Outcome.DATA


def test_json_empty_bucket_is_empty() -> None:
    body = b'{"timestamp": 1, "multiplier": 0.00001, "bid": null, "times": []}\n'
    assert JSON.classify(URL, resp(200, body, content_type="application/json")) is Outcome.EMPTY


def test_json_large_body_not_parsed_for_emptiness() -> None:
    body = b'{"times": [' + b"1," * 5000 + b'1], "note": "times: []"}'
    assert JSON.classify(URL, resp(200, body)) is Outcome.DATA


def test_json_small_malformed_body_retryable() -> None:
    with pytest.raises(RetryableFetchError, match="malformed JSON"):
        JSON.classify(URL, resp(200, b'{"times": [1,, 2]}'))


def test_json_candle_answer_without_times_retryable() -> None:
    body = b'{"timestamp": 1, "multiplier": 1e-05, "shift": 60000, "opens": []}'
    with pytest.raises(RetryableFetchError, match="no 'times' column"):
        JSON.classify(URL, resp(200, body))


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
