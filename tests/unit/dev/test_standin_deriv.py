"""The Deriv stand-in: its synthetic series, request checks, recorded captures, and the
WebSocket server (ping, app_id, errors, faults, stats, control) run on an ephemeral port.

Capture tests read ``../shared/data/deriv`` and skip when it is absent."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web
from support.shared_data import REPO_ROOT
from tickpipe_dev.standin.deriv import (
    HISTORY_START_S,
    LEGACY_PATH,
    PUBLIC_PATH,
    STANDIN_KEY,
    DerivFaults,
    DerivStandin,
    DerivStandinServer,
    SyntheticSeries,
    add_deriv_routes,
    check_history_request,
    load_captures,
    start_deriv_standin,
)

HOUR = 3600
DAY = 86400
T = int(datetime(2024, 3, 5, 10, tzinfo=UTC).timestamp())  # a Tuesday, 10:00 UTC
NOW = T + 400 * DAY
ERROR_CAPTURE = "error_InputValidationFailed_granularity_string_frxUSDJPY.json"


def deriv_dir() -> Path:
    """``../shared/data/deriv``; skips the test when absent."""
    env = os.environ.get("TICKPIPE_SHARED_DIR")
    path = (Path(env) if env else REPO_ROOT.parent / "shared") / "data" / "deriv"
    if not (path / "MANIFEST.csv").is_file():
        pytest.skip("../shared/data/deriv not found beside the repo (set TICKPIPE_SHARED_DIR)")
    return path


def aggregate(times: list[int], prices: list[float], g: int) -> dict[int, tuple[float, ...]]:
    """Candles by bucket epoch → (open, high, low, close), computed naively."""
    out: dict[int, list[float]] = {}
    for t, p in zip(times, prices, strict=True):
        c = out.setdefault(t - t % g, [p, p, p, p])
        c[1], c[2], c[3] = max(c[1], p), min(c[2], p), p
    return {e: tuple(c) for e, c in out.items()}


# --- synthetic series -------------------------------------------------------------------------


def test_series_is_deterministic_per_seed() -> None:
    a = SyntheticSeries(seed=1).ticks("R_50", T, T + HOUR - 1, 5000)
    b = SyntheticSeries(seed=1).ticks("R_50", T, T + HOUR - 1, 5000)
    c = SyntheticSeries(seed=2).ticks("R_50", T, T + HOUR - 1, 5000)
    assert a == b
    assert a[0] == c[0] and a[1] != c[1]


@pytest.mark.parametrize(("symbol", "interval", "pip"), [("R_50", 2, 4), ("R_100", 2, 2),
                                                         ("1HZ100V", 1, 2)])  # fmt: skip
def test_ticks_spacing_and_pip_size(symbol: str, interval: int, pip: int) -> None:
    times, prices = SyntheticSeries().ticks(symbol, T, T + HOUR - 1, 10_000)
    assert times == list(range(T, T + HOUR, interval))
    assert all(round(p, pip) == p for p in prices)
    assert all(p > 0 for p in prices)
    # A walk, not noise around a constant: neighbours are close.
    steps = np.abs(np.diff(prices))
    assert float(steps.max()) < 0.01 * prices[0]


def test_ticks_are_the_newest_count_in_the_window() -> None:
    series = SyntheticSeries()
    all_times, all_prices = series.ticks("R_50", T, T + HOUR - 1, 5000)
    times, prices = series.ticks("R_50", T, T + HOUR - 1, 100)
    assert times == all_times[-100:] and prices == all_prices[-100:]
    # Across a day boundary, in order.
    midnight = T - T % DAY + DAY
    times, _ = series.ticks("R_50", midnight - 10, midnight + 10, 5000)
    assert times == list(range(midnight - 10, midnight + 11, 2))
    assert series.ticks("R_50", T + 10, T + 5, 100) == ([], [])


def test_no_data_before_history_or_on_forex_weekends_or_for_unknown_symbols() -> None:
    series = SyntheticSeries()
    assert series.ticks("R_50", HISTORY_START_S - HOUR, HISTORY_START_S - 1, 100) == ([], [])
    times, _ = series.ticks("R_50", HISTORY_START_S - HOUR, HISTORY_START_S + 9, 100)
    assert times[0] == HISTORY_START_S
    saturday = int(datetime(2024, 3, 9, 12, tzinfo=UTC).timestamp())
    assert series.ticks("frxEURUSD", saturday, saturday + HOUR, 100) == ([], [])
    assert series.ticks("frxEURUSD", T, T + 60, 100)[0] != []
    assert series.ticks("XYZ", T, T + 60, 100) == ([], [])


@pytest.mark.parametrize("g", [60, 300, 3600, 50_000])
def test_candles_are_aggregated_from_the_ticks(g: int) -> None:
    series = SyntheticSeries(seed=3)
    start = T - T % DAY  # two whole days; 50 000 s buckets straddle midnight
    end = start + 2 * DAY - 1
    times, prices = series.ticks("R_50", start, end, 10**6)
    expected = {e: c for e, c in aggregate(times, prices, g).items() if e >= start}
    got = series.candles("R_50", g, start, end, 10**6)
    assert [c["epoch"] for c in got] == sorted(expected)
    for c in got:
        assert (c["open"], c["high"], c["low"], c["close"]) == expected[c["epoch"]]
    assert list(got[0]) == ["close", "epoch", "high", "low", "open"]


def test_candles_newest_count_and_partial_last_bucket() -> None:
    series = SyntheticSeries()
    full = series.candles("R_50", 60, T, T + HOUR - 1, 5000)
    assert len(full) == 60
    assert series.candles("R_50", 60, T, T + HOUR - 1, 7) == full[-7:]
    # end on a bucket start: that bucket holds one tick, so O = H = L = C (deriv.md §3.4).
    last = series.candles("R_50", 60, T, T + 600, 5000)[-1]
    assert last["epoch"] == T + 600
    assert last["open"] == last["high"] == last["low"] == last["close"]


# --- request checks ---------------------------------------------------------------------------


def _ok() -> dict[str, Any]:
    return {"ticks_history": "R_50", "style": "ticks", "start": T, "end": str(T + 10),
            "count": 10, "req_id": 1}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field", "why"),
    [
        ({"granularity": "120"}, "granularity", "does not have a value in the enumeration {0,60,"),
        ({"granularity": 61}, "granularity", "enumeration"),
        ({"count": "40"}, "count", "Expected integer - got string."),
        ({"count": 0}, "count", "less than 1"),
        ({"start": "1"}, "start", "Expected integer"),
        ({"end": "soon"}, "end", "latest"),
        ({"end": True}, "end", "latest"),
        ({"ticks_history": "R 50"}, "ticks_history", "does not match"),
        ({"style": "bars"}, "style", "enumeration"),
        ({"subscribe": "1"}, "subscribe", "Expected integer"),
        ({"req_id": "7"}, "req_id", "Expected integer"),
    ],
)
def test_invalid_fields_are_named(change: dict[str, Any], field: str, why: str) -> None:
    bad = check_history_request({**_ok(), **change}, legacy=True)
    assert bad is not None and bad[0] == field and why in bad[1]


def test_valid_requests_pass() -> None:
    assert check_history_request(_ok(), legacy=True) is None
    assert check_history_request({**_ok(), "end": "latest", "granularity": 0}, True) is None
    # 2018 servers took an integer end (the captures' echo_req).
    assert check_history_request({**_ok(), "end": T + 10}, True) is None
    # The new API takes any integer granularity.
    assert check_history_request({**_ok(), "granularity": 61}, legacy=False) is None


def test_error_reply_has_the_recorded_shape() -> None:
    recorded = json.loads((deriv_dir() / ERROR_CAPTURE).read_text())
    standin = DerivStandin(None, clock=lambda: NOW)
    reply = standin.history_reply(recorded["echo_req"])
    assert reply == recorded  # the request had no req_id, so neither has the reply


def test_unknown_symbol() -> None:
    reply = DerivStandin(None, clock=lambda: NOW).history_reply({**_ok(), "ticks_history": "XYZ"})
    assert reply["msg_type"] == "ticks_history"
    assert reply["error"]["code"] == "InvalidSymbol" and reply["req_id"] == 1


# --- captures ---------------------------------------------------------------------------------


def test_captures_and_their_windows() -> None:
    captures = {c.file: c for c in load_captures(deriv_dir())}
    assert ERROR_CAPTURE not in captures
    ticks = captures["ticks_history_R_50_ticks_1532340062_1532340080_stringtyped.json"]
    assert (ticks.symbol, ticks.style, ticks.granularity) == ("R_50", "ticks", None)
    assert (ticks.start, ticks.end, ticks.items) == (1532340061, 1532340080, 10)
    # Recorded with end "latest": the window is the span of the data.
    count3 = captures["ticks_history_R_50_ticks_count3_1524809066_1524809070.json"]
    assert (count3.start, count3.end, count3.items) == (1524809066, 1524809070, 3)
    r25 = captures["ticks_history_R_25_candles60_subscribe_1532591280_1532592960_stringtyped.json"]
    assert (r25.granularity, r25.start, r25.end, r25.items) == (60, 1532591280, 1532592960, 29)


def test_capture_is_served_with_the_requests_echo_and_req_id() -> None:
    root = deriv_dir()
    name = "ticks_history_R_25_candles60_subscribe_1532591280_1532592960_stringtyped.json"
    recorded = json.loads((root / name).read_text())
    standin = DerivStandin(root, clock=lambda: NOW)
    request = {"ticks_history": "R_25", "style": "candles", "granularity": 60,
               "start": 1532591280, "end": "1532592960", "count": 5000, "req_id": 41}  # fmt: skip
    reply = standin.history_reply(request)
    assert reply["candles"] == recorded["candles"]  # values untouched, strings stay strings
    assert reply["echo_req"] == request and reply["req_id"] == 41
    assert "pip_size" not in reply
    # Another window, or a count too small to hold the capture, gets synthetic data.
    assert standin.history_reply({**request, "count": 28})["candles"] != recorded["candles"][1:]
    other = standin.history_reply({**request, "start": 1532591220})
    assert other["pip_size"] == 3 and len(other["candles"]) == 30


# --- the server -------------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="function")
async def server() -> AsyncIterator[DerivStandinServer]:
    srv = await start_deriv_standin(None, clock=lambda: NOW)
    try:
        yield srv
    finally:
        await srv.stop()


async def ask(ws: aiohttp.ClientWebSocketResponse, request: dict[str, Any]) -> dict[str, Any]:
    await ws.send_str(json.dumps(request))
    reply = json.loads(await ws.receive_str(timeout=10))
    assert isinstance(reply, dict)
    return reply


async def test_ping_pong_like_the_capture(server: DerivStandinServer) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(server.url + "?app_id=1089") as ws:
        reply = await ask(ws, {"ping": 1})
        assert reply == {"echo_req": {"ping": 1}, "ping": "pong", "msg_type": "ping"}
        reply = await ask(ws, {"ping": 1, "req_id": 5})
        assert reply["req_id"] == 5 and reply["ping"] == "pong"


def test_ping_capture_shape() -> None:
    recorded = json.loads((deriv_dir() / "ping_pong.json").read_text())
    assert recorded == {"echo_req": {"ping": 1}, "ping": "pong", "msg_type": "ping"}


async def test_legacy_path_requires_app_id_and_the_public_path_does_not(
    server: DerivStandinServer,
) -> None:
    request = {**_ok(), "req_id": 3}
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(server.url) as ws:
            reply = await ask(ws, request)
            assert reply["error"]["code"] == "InvalidAppID"
            assert reply["msg_type"] == "ticks_history" and reply["req_id"] == 3
        async with s.ws_connect(server.public_url) as ws:
            reply = await ask(ws, request)
            assert reply["msg_type"] == "history" and reply["req_id"] == 3
            assert reply["echo_req"] == request and reply["pip_size"] == 4
            assert reply["history"]["times"] == list(range(T, T + 11, 2))[-10:]


async def test_ticks_and_candles_over_the_socket(server: DerivStandinServer) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(server.url + "?app_id=1") as ws:
        ticks = await ask(ws, {**_ok(), "end": str(T + HOUR - 1), "count": 5000})
        assert len(ticks["history"]["times"]) == 1800
        candles = await ask(ws, {**_ok(), "style": "candles", "granularity": 60,
                                 "end": str(T + HOUR - 1), "count": 5000, "req_id": 2})  # fmt: skip
        assert candles["msg_type"] == "candles" and len(candles["candles"]) == 60
        latest = await ask(ws, {**_ok(), "end": "latest", "start": NOW - 100, "req_id": 3})
        assert latest["history"]["times"][-1] == NOW
        unknown = await ask(ws, {"website_status": 1, "req_id": 4})
        assert unknown["error"]["code"] == "UnrecognisedRequest" and unknown["req_id"] == 4
        assert server.stats.calls["ticks_history"] == 3
        assert [h["outcome"] for h in server.stats.history] == ["synthetic"] * 3
        assert server.stats.history[0]["items"] == 1800


async def test_authorize(server: DerivStandinServer) -> None:
    server.standin.tokens = frozenset({"good"})
    async with aiohttp.ClientSession() as s, s.ws_connect(server.public_url) as ws:
        ok = await ask(ws, {"authorize": "good", "req_id": 1})
        assert ok["msg_type"] == "authorize" and ok["echo_req"]["authorize"] == "<not shown>"
        bad = await ask(ws, {"authorize": "bad", "req_id": 2})
        assert bad["error"]["code"] == "InvalidToken" and "bad" not in json.dumps(bad)


async def test_faults_rate_limit_then_drop(server: DerivStandinServer) -> None:
    server.standin.set_faults(DerivFaults(rate_limit_next=1, drop_next=1))
    async with aiohttp.ClientSession() as s, s.ws_connect(server.public_url) as ws:
        # Drop is checked first: the first call loses the connection.
        await ws.send_str(json.dumps(_ok()))
        msg = await ws.receive(timeout=10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.ERROR)  # fmt: skip
    async with aiohttp.ClientSession() as s, s.ws_connect(server.public_url) as ws:
        limited = await ask(ws, _ok())
        assert limited["error"] == {"message": "You have reached the rate limit for ticks_history.",
                                    "code": "RateLimit"}  # fmt: skip
        assert limited["msg_type"] == "ticks_history" and limited["req_id"] == 1
        assert (await ask(ws, _ok()))["msg_type"] == "history"
    assert [h["outcome"] for h in server.stats.history] == [
        "dropped", "error:RateLimit", "synthetic"]  # fmt: skip
    assert server.stats.connections == 2


async def test_delayed_replies_interleave(server: DerivStandinServer) -> None:
    server.standin.set_faults(DerivFaults(delay_ms=50))
    async with aiohttp.ClientSession() as s, s.ws_connect(server.public_url) as ws:
        for i in range(4):
            await ws.send_str(json.dumps({**_ok(), "req_id": i}))
        got = {json.loads(await ws.receive_str(timeout=10))["req_id"] for _ in range(4)}
    assert got == {0, 1, 2, 3}
    assert server.stats.max_in_flight == 4


async def test_control_and_stats_over_http(server: DerivStandinServer) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{server.http_url}/_deriv/control", json={"p_rate_limit": 1.0}) as r:
            assert r.status == 200 and (await r.json())["faults"]["p_rate_limit"] == 1.0
        async with s.post(f"{server.http_url}/_deriv/control", json={"p_drop": 2}) as r:
            assert r.status == 400 and "p_drop" in (await r.json())["error"]
        async with s.ws_connect(server.public_url) as ws:
            assert (await ask(ws, _ok()))["error"]["code"] == "RateLimit"
        async with s.get(f"{server.http_url}/_deriv/stats") as r:
            stats = await r.json()
            assert stats["calls"] == {"ticks_history": 1} and stats["connections"] == 1
        async with s.delete(f"{server.http_url}/_deriv/stats") as r:
            assert (await r.json())["calls"] == {}
        async with s.post(f"{server.http_url}/_deriv/control", json={"reset": True}) as r:
            assert (await r.json())["faults"]["p_rate_limit"] == 0.0


async def test_routes_mount_beside_other_routes() -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="other")

    app = web.Application()
    app.router.add_get("/healthz", hello)
    add_deriv_routes(app, None)
    assert isinstance(app[STANDIN_KEY], DerivStandin)
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert {LEGACY_PATH, PUBLIC_PATH, "/healthz", "/_deriv/control"} <= paths
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(f"ws://127.0.0.1:{port}{PUBLIC_PATH}")
            assert (await ask(ws, {"ping": 1}))["ping"] == "pong"
            # Shutdown closes sockets that are still open.
            await asyncio.wait_for(runner.cleanup(), 10)
            msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    finally:
        await runner.cleanup()
