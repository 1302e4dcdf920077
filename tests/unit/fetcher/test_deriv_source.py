"""The Deriv source against a fake socket: the requests it sends, paging backwards, the raw
payload, ``pace`` before every call, error codes, the token, reconnects (deriv.md §2–§6)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from pydantic import SecretStr
from tickpipe_fetcher import ws
from tickpipe_fetcher.http import PermanentFetchError, RetryableFetchError
from tickpipe_fetcher.sources.deriv import (
    DerivAnswer,
    DerivSource,
    MarketClosedError,
    RateLimitedError,
    page_epochs,
    ws_url,
)
from tickpipe_fetcher.ws import WsClosedError, WsConnection
from tickpipe_shared.config import Settings
from tickpipe_shared.logging import configure_logging
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.fetch_units import FetchUnit

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
T0 = int(datetime(2024, 3, 5, 10, tzinfo=UTC).timestamp() * 1000)  # a closed hour
NOW = T0 + 400 * DAY_MS
TOKEN = "s3cr3t-T0ken-value"
DROP = object()

Answer = Callable[[dict[str, Any]], object]


def unit(kind: str = "ticks", start_ms: int = T0, end_ms: int | None = None,
         code: str = "R_50") -> FetchUnit:  # fmt: skip
    return FetchUnit(
        "req-1",
        Unit("deriv", "R_50", kind, start_ms, end_ms if end_ms is not None else start_ms + HOUR_MS),
        code,
        4,
    )


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "deriv_url": "wss://ws.test/websockets/v3?l=EN",
        "deriv_app_id": "1089",
        "deriv_page_count": 5000,
        "fetch_read_timeout_s": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


class FakeConn:
    def __init__(self, server: FakeDeriv) -> None:
        self.server = server
        self.frames: asyncio.Queue[str | None] = asyncio.Queue()
        self.closed = False

    async def send(self, text: str) -> None:
        if self.closed:
            raise WsClosedError("socket closed")
        request = json.loads(text)
        self.server.sent.append(request)
        out = self.server.answer(request)
        if out is DROP:
            self.frames.put_nowait(None)
        elif isinstance(out, str):
            self.frames.put_nowait(out)
        elif out is not None:
            self.frames.put_nowait(json.dumps(out))

    async def receive(self) -> str:
        frame = await self.frames.get()
        if frame is None:
            self.closed = True
            raise WsClosedError("dropped by the server")
        return frame

    async def close(self) -> None:
        self.closed = True
        self.frames.put_nowait(None)


class FakeDeriv:
    """Answers each frame with ``answer(request)``: a dict (sent as JSON), a str (sent as is),
    ``DROP`` (the socket drops) or ``None`` (no answer yet: the test answers via ``conns``)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.sent: list[dict[str, Any]] = []
        self.conns: list[FakeConn] = []
        self.urls: list[str] = []

    async def connect(self, url: str) -> WsConnection:
        self.urls.append(url)
        conn = FakeConn(self)
        self.conns.append(conn)
        return conn

    @property
    def history_requests(self) -> list[dict[str, Any]]:
        return [m for m in self.sent if "ticks_history" in m]


def history(request: dict[str, Any], epochs: list[int], as_strings: bool = False) -> dict[str, Any]:
    """The newest ``count`` of ``epochs`` within the request's window, like the server."""
    end = int(request["end"])
    inside = [t for t in sorted(epochs) if request["start"] <= t <= end][-request["count"] :]
    times: list[Any] = [str(t) for t in inside] if as_strings else inside
    prices: list[Any] = [round(100 + (t % 97) / 10_000, 4) for t in inside]
    return {"echo_req": {k: v for k, v in request.items() if k != "req_id"},
            "history": {"prices": prices, "times": times}, "msg_type": "history",
            "pip_size": 4, "req_id": request["req_id"]}  # fmt: skip


def candles(request: dict[str, Any], epochs: list[int]) -> dict[str, Any]:
    end = int(request["end"])
    inside = [t for t in sorted(epochs) if request["start"] <= t <= end][-request["count"] :]
    items = [{"close": 1.5, "epoch": t, "high": 1.6, "low": 1.4, "open": 1.5} for t in inside]
    return {"candles": items, "echo_req": {}, "msg_type": "candles", "pip_size": 4,
            "req_id": request["req_id"]}  # fmt: skip


def error(request: dict[str, Any], code: str, message: str = "Something.") -> dict[str, Any]:
    return {"echo_req": {}, "error": {"code": code, "message": message},
            "msg_type": "ticks_history", "req_id": request["req_id"]}  # fmt: skip


def every_2s(start_ms: int = T0, end_ms: int = T0 + HOUR_MS) -> list[int]:
    return list(range(start_ms // 1000, end_ms // 1000, 2))


class Pace:
    """A ``pace`` that records how many ``ticks_history`` calls had been sent when awaited."""

    def __init__(self, server: FakeDeriv) -> None:
        self.server = server
        self.seen: list[int] = []

    async def __call__(self) -> None:
        self.seen.append(len(self.server.history_requests))


def source_for(fake: FakeDeriv, **overrides: Any) -> DerivSource:
    return DerivSource(settings(**overrides), connect=fake.connect)


def pages(answer: DerivAnswer) -> list[dict[str, Any]]:
    parsed = json.loads(answer.body)
    assert isinstance(parsed, list)
    return parsed


# --- the request ------------------------------------------------------------------------------


def test_ws_url_adds_app_id_and_keeps_other_parameters() -> None:
    assert (
        ws_url("wss://ws.test/websockets/v3", "1089") == "wss://ws.test/websockets/v3?app_id=1089"
    )
    assert (
        ws_url("wss://ws.test/websockets/v3?l=EN&app_id=1&brand=deriv", "42")
        == "wss://ws.test/websockets/v3?l=EN&brand=deriv&app_id=42"
    )


def test_source_needs_a_url() -> None:
    with pytest.raises(ValueError, match="TICKPIPE_DERIV_URL"):
        DerivSource(settings(deriv_url=None))


def test_host_is_the_url_host() -> None:
    fake = FakeDeriv(lambda r: None)
    src = DerivSource(settings(deriv_url="wss://WS.test:8443/websockets/v3"), fake.connect)
    assert src.host == "ws.test:8443"
    assert (src.name, src.format) == ("deriv", "deriv-ticks-history")


def test_request_of_a_closed_tick_hour() -> None:
    src = source_for(FakeDeriv(lambda r: None))
    assert src.request_for(unit(), NOW) == {
        "ticks_history": "R_50",
        "style": "ticks",
        "start": T0 // 1000,
        "end": str(T0 // 1000 + 3599),
        "count": 5000,
    }


def test_request_of_a_candle_day_asks_the_granularity_in_seconds() -> None:
    src = source_for(FakeDeriv(lambda r: None), deriv_page_count=1000)
    day = T0 - T0 % DAY_MS
    request = src.request_for(unit("candles:5m:mid", day, day + DAY_MS), NOW)
    assert request == {
        "ticks_history": "R_50",
        "style": "candles",
        "granularity": 300,
        "start": day // 1000,
        "end": str(day // 1000 + 86399),
        "count": 1000,
    }


def test_request_of_an_open_unit_ends_now_and_a_future_unit_asks_nothing() -> None:
    src = source_for(FakeDeriv(lambda r: None))
    now = T0 + 1234_567
    request = src.request_for(unit(), now)
    assert request is not None and request["end"] == str(now // 1000)
    assert src.request_for(unit(start_ms=now + 1000, end_ms=now + HOUR_MS), now) is None


@pytest.mark.parametrize("kind", ["candles:1m:bid", "candles:1mo:mid", "candles:1x:mid"])
def test_kinds_deriv_does_not_serve_are_permanent(kind: str) -> None:
    src = source_for(FakeDeriv(lambda r: None))
    with pytest.raises(PermanentFetchError, match="R_50"):
        src.request_for(unit(kind), NOW)


async def test_future_unit_is_empty_without_a_call() -> None:
    fake = FakeDeriv(lambda r: pytest.fail("no call expected"))
    src = source_for(fake)
    pace = Pace(fake)
    answer = await src.fetch(unit(start_ms=NOW + HOUR_MS, end_ms=NOW + 2 * HOUR_MS), NOW, pace)
    assert answer == DerivAnswer(b"[]", True, src.url, 0)
    assert pace.seen == [] and fake.conns == []


# --- one page ---------------------------------------------------------------------------------


async def test_one_page_body_is_the_reply_text_untouched() -> None:
    text = ('{"echo_req": {}, "history": {"prices": [184.7895, "184.7663"], '
            '"times": ["%d", %d]},   "msg_type": "history", "req_id": 1}')  # fmt: skip
    t = T0 // 1000
    fake = FakeDeriv(lambda r: text % (t + 2, t + 4))
    src = source_for(fake)
    answer = await src.fetch(unit(), NOW, Pace(fake))
    assert answer.body == b"[" + (text % (t + 2, t + 4)).encode() + b"]"
    assert answer.empty is False and answer.requests == 1
    assert answer.url == "wss://ws.test/websockets/v3?l=EN&app_id=1089"
    assert fake.urls == [answer.url]
    (sent,) = fake.sent
    assert sent == {"ticks_history": "R_50", "style": "ticks", "start": t,
                    "end": str(t + 3599), "count": 5000, "req_id": 1}  # fmt: skip
    assert isinstance(sent["start"], int) and isinstance(sent["count"], int)
    await src.close()


async def test_empty_page_is_an_empty_unit() -> None:
    fake = FakeDeriv(lambda r: history(r, []))
    src = source_for(fake)
    answer = await src.fetch(unit(), NOW, Pace(fake))
    assert answer.empty is True and answer.requests == 1
    assert pages(answer)[0]["history"]["times"] == []
    await src.close()


# --- paging -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "expected_pages"),
    [
        (5000, 1),  # 1800 ticks: one page that is not full
        (1800, 1),  # exactly full, and its oldest tick is the start: no second call
        (900, 2),  # the second page reaches the start
        (600, 3),
        (500, 4),  # 500, 500, 500, 300
        (1799, 2),  # the second page holds one tick
    ],
)
async def test_pages_backwards_without_gaps_or_overlap(count: int, expected_pages: int) -> None:
    ticks = every_2s()
    fake = FakeDeriv(lambda r: history(r, ticks))
    src = source_for(fake, deriv_page_count=count)
    pace = Pace(fake)
    answer = await src.fetch(unit(), NOW, pace)
    assert answer.requests == expected_pages == len(fake.history_requests)
    # pace() is awaited before every call, never after the last one.
    assert pace.seen == list(range(expected_pages))
    got = [page["history"]["times"] for page in pages(answer)]
    # Newest page first; each next page ends one second before the previous page's oldest tick.
    for request, previous in zip(fake.history_requests[1:], got, strict=False):
        assert int(request["end"]) == min(previous) - 1
        assert request["start"] == T0 // 1000
    flat = [t for page in got for t in page]
    assert len(flat) == len(set(flat)) == 1800
    assert sorted(flat) == ticks
    assert answer.empty is False


async def test_string_epochs_page_too() -> None:
    ticks = every_2s()
    fake = FakeDeriv(lambda r: history(r, ticks, as_strings=True))
    src = source_for(fake, deriv_page_count=1000)
    answer = await src.fetch(unit(), NOW, Pace(fake))
    assert answer.requests == 2
    assert fake.history_requests[1]["end"] == str(ticks[800] - 1)
    assert pages(answer)[0]["history"]["times"][0] == str(ticks[800])


async def test_candles_page_backwards_by_bucket() -> None:
    day = T0 - T0 % DAY_MS
    buckets = list(range(day // 1000, day // 1000 + 86400, 60))
    fake = FakeDeriv(lambda r: candles(r, buckets))
    src = source_for(fake, deriv_page_count=1000)
    answer = await src.fetch(unit("candles:1m:mid", day, day + DAY_MS), NOW, Pace(fake))
    assert answer.requests == 2
    first, second = fake.history_requests
    assert first["granularity"] == second["granularity"] == 60
    # The second page ends inside the bucket before the first page's oldest one.
    assert second["end"] == str(buckets[440] - 1)
    epochs = [c["epoch"] for page in pages(answer) for c in page["candles"]]
    assert sorted(epochs) == buckets


async def test_a_server_ignoring_end_is_caught() -> None:
    ticks = every_2s()
    newest = history({"start": 0, "end": str(10**10), "count": 100, "req_id": 0}, ticks)

    def same_page(request: dict[str, Any]) -> dict[str, Any]:
        return {**newest, "req_id": request["req_id"]}

    fake = FakeDeriv(same_page)
    src = source_for(fake, deriv_page_count=100)
    with pytest.raises(RetryableFetchError, match="cannot page backwards"):
        await src.fetch(unit(), NOW, Pace(fake))
    assert len(fake.history_requests) == 2


async def test_pages_are_capped() -> None:
    # A server creeping back one second per full page would take 3600 calls for one hour.
    def creeping(request: dict[str, Any]) -> dict[str, Any]:
        n, end = request["count"], int(request["end"])
        return {"history": {"prices": [1.0] * n, "times": [end] * n}, "msg_type": "history",
                "req_id": request["req_id"]}  # fmt: skip

    fake = FakeDeriv(creeping)
    src = source_for(fake, deriv_page_count=1000)
    with pytest.raises(PermanentFetchError, match=r"still full pages after 5 pages of 1000"):
        await src.fetch(unit(), NOW, Pace(fake))
    assert len(fake.history_requests) == 5


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "exc_type"),
    [
        ("InputValidationFailed", PermanentFetchError),
        ("InvalidSymbol", PermanentFetchError),
        ("InvalidAppID", PermanentFetchError),
        ("InvalidToken", PermanentFetchError),
        ("RateLimit", RateLimitedError),
        ("MarketIsClosed", MarketClosedError),  # in a unit the schedule has open
        ("SomethingNew", RetryableFetchError),
    ],
)
async def test_error_codes(code: str, exc_type: type[Exception]) -> None:
    fake = FakeDeriv(lambda r: error(r, code, "You have reached the rate limit for ticks_history."))
    src = source_for(fake)
    open_unit = dataclasses.replace(unit(code="R_75"), market_open=True)
    with pytest.raises(exc_type) as info:
        await src.fetch(open_unit, NOW, Pace(fake))
    assert type(info.value) is exc_type
    message = str(info.value)
    assert (
        code in message and "R_75" in message and "deriv|R_50|ticks|2024-03-05T10:00:00Z" in message
    )
    assert "rate limit for ticks_history" in message


def test_rate_limit_is_retryable() -> None:
    assert issubclass(RateLimitedError, RetryableFetchError)
    assert issubclass(MarketClosedError, RetryableFetchError)


async def test_error_details_name_the_field() -> None:
    def bad(request: dict[str, Any]) -> dict[str, Any]:
        reply = error(request, "InputValidationFailed", "Input validation failed: granularity")
        reply["error"]["details"] = {"granularity": "does not have a value in the enumeration"}
        return reply

    fake = FakeDeriv(bad)
    src = source_for(fake)
    with pytest.raises(PermanentFetchError, match=r"granularity: does not have a value"):
        await src.fetch(unit("candles:1m:mid"), NOW, Pace(fake))


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        ({"msg_type": "candles", "candles": []}, "reply msg_type 'candles', expected 'history'"),
        ({"msg_type": "history"}, "'history' is missing"),
        ({"msg_type": "history", "history": {"times": ["soon"]}}, "is not a whole number"),
        ({"msg_type": "history", "history": {"times": [True]}}, "is a boolean"),
        ({"msg_type": "ticks_history", "error": "boom"}, "malformed error reply"),
    ],
)
async def test_malformed_replies_are_retryable(reply: dict[str, Any], match: str) -> None:
    fake = FakeDeriv(lambda r: {**reply, "req_id": r["req_id"]})
    src = source_for(fake)
    with pytest.raises(RetryableFetchError, match=match):
        await src.fetch(unit(), NOW, Pace(fake))


def test_page_epochs_is_lenient_about_number_types() -> None:
    assert page_epochs({"history": {"times": [1, "2", 3.0, " 4"]}}, "ticks") == [1, 2, 3, 4]
    assert page_epochs({"candles": [{"epoch": "60"}, {"epoch": 120}]}, "candles") == [60, 120]
    with pytest.raises(ValueError, match=r"candles\[0\]"):
        page_epochs({"candles": [[60]]}, "candles")


async def test_no_reply_in_time_is_retryable() -> None:
    fake = FakeDeriv(lambda r: None)
    src = source_for(fake, fetch_read_timeout_s=0.05)
    with pytest.raises(RetryableFetchError, match=r"R_50 ticks .* no reply from ws\.test"):
        await src.fetch(unit(), NOW, Pace(fake))
    await src.close()


async def test_pace_errors_propagate_before_any_call() -> None:
    fake = FakeDeriv(lambda r: history(r, every_2s()))
    src = source_for(fake)

    async def open_breaker() -> None:
        raise RetryableFetchError("circuit open for ws.test")

    with pytest.raises(RetryableFetchError, match="circuit open"):
        await src.fetch(unit(), NOW, open_breaker)
    assert fake.sent == []


# --- one socket, concurrency and reconnects ---------------------------------------------------


async def test_concurrent_units_share_one_socket_and_get_their_own_replies() -> None:
    held: list[dict[str, Any]] = []
    all_asked = asyncio.Event()

    def hold(request: dict[str, Any]) -> None:
        held.append(request)
        if len(held) == 3:
            all_asked.set()

    fake = FakeDeriv(hold)
    src = source_for(fake)
    hours = [T0, T0 + HOUR_MS, T0 + 2 * HOUR_MS]
    tasks = [asyncio.create_task(src.fetch(unit(start_ms=h), NOW, Pace(fake))) for h in hours]
    await all_asked.wait()
    conn = fake.conns[0]
    for request in reversed(held):  # answered in the opposite order
        epochs = every_2s(request["start"] * 1000, request["start"] * 1000 + HOUR_MS)
        conn.frames.put_nowait(json.dumps(history(request, epochs)))
    answers = await asyncio.gather(*tasks)
    for h, answer in zip(hours, answers, strict=True):
        (page,) = pages(answer)
        assert page["history"]["times"][0] == h // 1000
    assert len(fake.conns) == 1
    await src.close()


async def test_a_drop_fails_the_unit_retryably_and_the_next_fetch_reconnects() -> None:
    calls = 0

    def flaky(request: dict[str, Any]) -> object:
        nonlocal calls
        calls += 1
        return DROP if calls == 1 else history(request, every_2s())

    fake = FakeDeriv(flaky)
    src = source_for(fake)
    with pytest.raises(RetryableFetchError, match="dropped"):
        await src.fetch(unit(), NOW, Pace(fake))
    answer = await src.fetch(unit(), NOW, Pace(fake))
    assert answer.requests == 1 and not answer.empty
    assert len(fake.conns) == 2 and src.connections == 2
    await src.close()


# --- the token --------------------------------------------------------------------------------


@pytest.fixture
def log_stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """JSON log lines of the test at DEBUG; logging put back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("fetcher", "DEBUG", stream=stream)
    # The module's logger may have been cached under an earlier configuration.
    monkeypatch.setattr(ws, "log", structlog.get_logger())
    yield stream
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


def authorizing(answer: Answer, token_error: bool = False) -> Answer:
    def reply(request: dict[str, Any]) -> object:
        if "authorize" in request:
            if token_error:
                return {"echo_req": {"authorize": "<not shown>"}, "msg_type": "authorize",
                        "error": {"code": "InvalidToken",
                                  "message": f"The token {request['authorize']} is invalid."},
                        "req_id": request["req_id"]}  # fmt: skip
            return {"authorize": {"loginid": "VRTC1"}, "msg_type": "authorize",
                    "req_id": request["req_id"]}  # fmt: skip
        return answer(request)

    return reply


async def test_token_authorizes_each_new_socket_and_never_leaks(log_stream: io.StringIO) -> None:
    calls = 0

    def flaky(request: dict[str, Any]) -> object:
        nonlocal calls
        calls += 1
        return DROP if calls == 1 else history(request, every_2s())

    fake = FakeDeriv(authorizing(flaky))
    src = source_for(fake, deriv_token=SecretStr(TOKEN))
    with pytest.raises(RetryableFetchError) as info:
        await src.fetch(unit(), NOW, Pace(fake))
    answer = await src.fetch(unit(), NOW, Pace(fake))
    await src.close()
    assert [next(iter(m)) for m in fake.sent] == [
        "authorize", "ticks_history", "authorize", "ticks_history"]  # fmt: skip
    assert fake.sent[0]["authorize"] == TOKEN
    assert TOKEN not in answer.url and TOKEN not in answer.body.decode()
    assert all(TOKEN not in url for url in fake.urls)
    assert TOKEN not in str(info.value) and TOKEN not in repr(src.__dict__)
    logged = log_stream.getvalue()
    assert "ws_connected" in logged and TOKEN not in logged


async def test_invalid_token_is_permanent_and_redacted(log_stream: io.StringIO) -> None:
    fake = FakeDeriv(authorizing(lambda r: history(r, every_2s()), token_error=True))
    src = source_for(fake, deriv_token=SecretStr(TOKEN))
    pace = Pace(fake)
    with pytest.raises(PermanentFetchError) as info:
        await src.fetch(unit(), NOW, pace)
    assert "InvalidToken" in str(info.value) and "The token *** is invalid" in str(info.value)
    assert TOKEN not in str(info.value)
    assert fake.history_requests == [] and pace.seen == [0]
    assert TOKEN not in log_stream.getvalue()
    await src.close()
