"""The Deriv source over a real local WebSocket against the Deriv stand-in (no Kafka needed):
recorded captures, multi-page hours and days, concurrency on one socket, faults, the token.

Capture tests read ``../shared/data/deriv`` and skip when it is absent; the rest use the
stand-in's synthetic series."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr
from support.shared_data import REPO_ROOT
from tickpipe_dev.standin.deriv import DerivFaults, DerivStandinServer, start_deriv_standin
from tickpipe_fetcher.http import PermanentFetchError, RetryableFetchError
from tickpipe_fetcher.sources.deriv import DerivAnswer, DerivSource, RateLimitedError
from tickpipe_shared.config import Settings
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.fetch_units import FetchUnit

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
T0 = int(datetime(2024, 3, 5, 10, tzinfo=UTC).timestamp() * 1000)  # a Tuesday, 10:00 UTC
NOW_MS = T0 + 400 * DAY_MS


def deriv_root() -> Path | None:
    env = os.environ.get("TICKPIPE_SHARED_DIR")
    path = (Path(env) if env else REPO_ROOT.parent / "shared") / "data" / "deriv"
    return path if (path / "MANIFEST.csv").is_file() else None


def recorded(name: str) -> dict[str, Any]:
    root = deriv_root()
    if root is None:
        pytest.skip("../shared/data/deriv not found beside the repo (set TICKPIPE_SHARED_DIR)")
    data = json.loads((root / name).read_text())
    assert isinstance(data, dict)
    return data


@pytest_asyncio.fixture(loop_scope="function")
async def standin() -> AsyncIterator[DerivStandinServer]:
    server = await start_deriv_standin(deriv_root(), clock=lambda: NOW_MS / 1000)
    try:
        yield server
    finally:
        await server.stop()


class Pace:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1


def source(server: DerivStandinServer, url: str | None = None, **overrides: Any) -> DerivSource:
    values: dict[str, Any] = {"deriv_url": url or server.url, "deriv_app_id": "1089",
                              "fetch_read_timeout_s": 10.0, **overrides}  # fmt: skip
    return DerivSource(Settings(**values))


def unit(kind: str, start_ms: int, end_ms: int, code: str = "R_50") -> FetchUnit:
    return FetchUnit("req", Unit("deriv", code, kind, start_ms, end_ms), code, -1)


def pages(answer: DerivAnswer) -> list[dict[str, Any]]:
    parsed = json.loads(answer.body)
    assert isinstance(parsed, list)
    return parsed


def tick_times(answer: DerivAnswer) -> list[int]:
    return [int(t) for page in pages(answer) for t in page["history"]["times"]]


# --- captures ---------------------------------------------------------------------------------


async def test_recorded_ticks_window(standin: DerivStandinServer) -> None:
    capture = recorded("ticks_history_R_50_ticks_1532340062_1532340080_stringtyped.json")
    src = source(standin)
    pace = Pace()
    answer = await src.fetch(unit("ticks", 1532340061000, 1532340081000), NOW_MS, pace)
    await src.close()
    (page,) = pages(answer)
    assert page["history"] == capture["history"]  # string-typed prices and times, untouched
    assert page["msg_type"] == "history" and isinstance(page["req_id"], int)
    assert (answer.requests, answer.empty, pace.calls) == (1, False, 1)
    assert answer.url == f"{standin.url}?app_id=1089"
    (seen,) = standin.stats.history
    assert seen["outcome"].startswith("capture:") and seen["end"] == "1532340080"


async def test_recorded_count3_page_is_full_and_reaches_the_start(
    standin: DerivStandinServer,
) -> None:
    capture = recorded("ticks_history_R_50_ticks_count3_1524809066_1524809070.json")
    src = source(standin, deriv_page_count=3)
    answer = await src.fetch(unit("ticks", 1524809066000, 1524809071000), NOW_MS, Pace())
    await src.close()
    (page,) = pages(answer)
    assert page["history"] == capture["history"]
    assert answer.requests == 1  # full, but its oldest tick is the window's start


async def test_recorded_candles_window(standin: DerivStandinServer) -> None:
    capture = recorded("ticks_history_R_50_candles60_1532310420_1532310960_stringtyped.json")
    src = source(standin)
    answer = await src.fetch(unit("candles:1m:mid", 1532310420000, 1532310961000), NOW_MS, Pace())
    await src.close()
    (page,) = pages(answer)
    assert page["candles"] == capture["candles"] and page["msg_type"] == "candles"
    assert standin.stats.history[0]["granularity"] == 60


# --- paging -----------------------------------------------------------------------------------


async def test_multi_page_hour(standin: DerivStandinServer) -> None:
    src = source(standin, deriv_page_count=500)
    pace = Pace()
    answer = await src.fetch(unit("ticks", T0, T0 + HOUR_MS), NOW_MS, pace)
    await src.close()
    assert answer.requests == 4 == pace.calls == standin.stats.calls["ticks_history"]
    sizes = [len(p["history"]["times"]) for p in pages(answer)]
    assert sizes == [500, 500, 500, 300]
    times = tick_times(answer)
    assert len(times) == len(set(times))
    assert sorted(times) == list(range(T0 // 1000, (T0 + HOUR_MS) // 1000, 2))
    ends = [int(h["end"]) for h in standin.stats.history]
    assert ends[0] == (T0 + HOUR_MS) // 1000 - 1
    assert all(b < a for a, b in itertools.pairwise(ends))
    assert all(p["pip_size"] == 4 for p in pages(answer))


async def test_paged_candles_equal_one_page(standin: DerivStandinServer) -> None:
    day = T0 - T0 % DAY_MS
    day_unit = unit("candles:1m:mid", day, day + DAY_MS)
    paged_src = source(standin, deriv_page_count=1000)
    whole_src = source(standin, deriv_page_count=5000)
    paged = await paged_src.fetch(day_unit, NOW_MS, Pace())
    whole = await whole_src.fetch(day_unit, NOW_MS, Pace())
    await paged_src.close()
    await whole_src.close()
    assert (paged.requests, whole.requests) == (2, 1)
    by_epoch = {c["epoch"]: c for page in pages(paged) for c in page["candles"]}
    assert len(by_epoch) == 1440 == sum(len(p["candles"]) for p in pages(paged))
    # Paging backwards with end = oldest - 1 never cuts a candle short.
    assert [by_epoch[e] for e in sorted(by_epoch)] == pages(whole)[0]["candles"]


async def test_open_unit_ends_now(standin: DerivStandinServer) -> None:
    hour = NOW_MS - NOW_MS % HOUR_MS
    src = source(standin)
    answer = await src.fetch(unit("ticks", hour, hour + HOUR_MS), NOW_MS, Pace())
    await src.close()
    times = tick_times(answer)
    assert max(times) <= NOW_MS // 1000 and min(times) == hour // 1000


async def test_closed_market_and_before_history_are_empty(standin: DerivStandinServer) -> None:
    saturday = int(datetime(2024, 3, 9, 12, tzinfo=UTC).timestamp() * 1000)
    src = source(standin)
    weekend = await src.fetch(unit("ticks", saturday, saturday + HOUR_MS, "frxEURUSD"),
                              NOW_MS, Pace())  # fmt: skip
    old = await src.fetch(unit("candles:1h:mid", 1_388_534_400_000, 1_391_212_800_000),
                          NOW_MS, Pace())  # fmt: skip
    await src.close()
    assert weekend.empty and weekend.requests == 1
    assert pages(weekend)[0]["history"] == {"prices": [], "times": []}
    assert old.empty and pages(old)[0]["candles"] == []


async def test_public_path(standin: DerivStandinServer) -> None:
    src = source(standin, url=standin.public_url)
    answer = await src.fetch(unit("ticks", T0, T0 + HOUR_MS), NOW_MS, Pace())
    await src.close()
    assert len(tick_times(answer)) == 1800


# --- one socket, faults -----------------------------------------------------------------------


async def test_concurrent_units_share_one_socket(standin: DerivStandinServer) -> None:
    standin.standin.set_faults(DerivFaults(delay_ms=20, jitter_ms=80, seed=7))
    src = source(standin, deriv_page_count=700)
    hours = [T0 + i * HOUR_MS for i in range(6)]
    answers = await asyncio.gather(
        *(src.fetch(unit("ticks", h, h + HOUR_MS), NOW_MS, Pace()) for h in hours)
    )
    await src.close()
    for h, answer in zip(hours, answers, strict=True):
        assert sorted(tick_times(answer)) == list(range(h // 1000, (h + HOUR_MS) // 1000, 2))
        assert answer.requests == 3
    assert standin.stats.connections == 1 and src.connections == 1
    assert standin.stats.max_in_flight > 1


async def test_rate_limit_then_success(standin: DerivStandinServer) -> None:
    standin.standin.set_faults(DerivFaults(rate_limit_next=1))
    src = source(standin)
    hour = unit("ticks", T0, T0 + HOUR_MS)
    with pytest.raises(RateLimitedError, match="RateLimit"):
        await src.fetch(hour, NOW_MS, Pace())
    answer = await src.fetch(hour, NOW_MS, Pace())
    await src.close()
    assert answer.requests == 1 and not answer.empty
    assert standin.stats.connections == 1  # an error reply keeps the socket


async def test_drop_then_reconnect(standin: DerivStandinServer) -> None:
    standin.standin.set_faults(DerivFaults(drop_next=1))
    src = source(standin)
    hour = unit("ticks", T0, T0 + HOUR_MS)
    with pytest.raises(RetryableFetchError, match="dropped before the reply came"):
        await src.fetch(hour, NOW_MS, Pace())
    answer = await src.fetch(hour, NOW_MS, Pace())
    await src.close()
    assert len(tick_times(answer)) == 1800
    assert standin.stats.connections == 2 and src.connections == 2


async def test_unknown_symbol_is_permanent(standin: DerivStandinServer) -> None:
    src = source(standin)
    with pytest.raises(PermanentFetchError, match="InvalidSymbol"):
        await src.fetch(unit("ticks", T0, T0 + HOUR_MS, "NOPE_1"), NOW_MS, Pace())
    await src.close()


async def test_token_authorizes_once_per_socket(standin: DerivStandinServer) -> None:
    standin.standin.tokens = frozenset({"good-token"})
    src = source(standin, deriv_token=SecretStr("good-token"))
    for h in (T0, T0 + HOUR_MS):
        await src.fetch(unit("ticks", h, h + HOUR_MS), NOW_MS, Pace())
    await src.close()
    assert standin.stats.calls["authorize"] == 1
    bad = source(standin, deriv_token=SecretStr("bad-token"))
    with pytest.raises(PermanentFetchError, match="InvalidToken") as info:
        await bad.fetch(unit("ticks", T0, T0 + HOUR_MS), NOW_MS, Pace())
    await bad.close()
    assert "bad-token" not in str(info.value)


def closed_unit(market_open: bool | None) -> FetchUnit:
    """An hour of frxEURUSD ticks with the planner's ``market_open``."""
    return FetchUnit("req", Unit("deriv", "frxEURUSD", "ticks", T0, T0 + HOUR_MS), "frxEURUSD",
                     -1, "fx", market_open)  # fmt: skip


@pytest.mark.parametrize("market_open", [False, None])
async def test_market_is_closed_in_a_closed_period_is_an_empty_unit(
    standin: DerivStandinServer, market_open: bool | None
) -> None:
    from tickpipe_decoder.formats.deriv import decode_deriv_ticks

    standin.standin.set_faults(DerivFaults(market_closed_next=1))
    src = source(standin)
    answer = await src.fetch(closed_unit(market_open), NOW_MS, Pace())
    await src.close()
    assert (answer.body, answer.empty) == (b"[]", True)
    assert [h["outcome"] for h in standin.stats.history] == ["error:MarketIsClosed"]
    ticks, _ = decode_deriv_ticks(answer.body, T0, T0 + HOUR_MS)
    assert len(ticks) == 0  # the decoder stores it as an empty unit


async def test_market_is_closed_when_the_schedule_says_open_is_retried(
    standin: DerivStandinServer,
) -> None:
    from tickpipe_fetcher.sources.deriv import MarketClosedError

    standin.standin.set_faults(DerivFaults(market_closed_next=1))
    src = source(standin)
    with pytest.raises(MarketClosedError, match="MarketIsClosed"):
        await src.fetch(closed_unit(True), NOW_MS, Pace())
    answer = await src.fetch(closed_unit(True), NOW_MS, Pace())  # the retry goes through
    await src.close()
    assert not answer.empty


class ForwardProxy:
    """A minimal HTTP proxy on 127.0.0.1: ``CONNECT host:port`` tunnels, and absolute-URI
    requests (``GET http://host:port/path``, how aiohttp proxies ``ws://``) forwarded with the
    path only, then bytes piped both ways. ``seen``: the request lines it handled."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        line, _, rest = head.partition(b"\r\n")
        method, target, version = line.decode().split(" ")
        self.seen.append(f"{method} {target}")
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            up_r, up_w = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            from urllib.parse import urlsplit

            parts = urlsplit(target)
            up_r, up_w = await asyncio.open_connection(parts.hostname, parts.port or 80)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            up_w.write(f"{method} {path} {version}\r\n".encode() + rest)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer), return_exceptions=True)


async def test_the_per_source_proxy_carries_the_deriv_websocket(
    standin: DerivStandinServer,
) -> None:
    proxy = ForwardProxy()
    await proxy.start()
    try:
        src = source(standin, http_proxy_by_source={"deriv": proxy.url},
                     http_proxy="http://127.0.0.1:9/unused")  # fmt: skip
        answer = await src.fetch(unit("ticks", T0, T0 + HOUR_MS), NOW_MS, Pace())
        await src.close()
    finally:
        await proxy.stop()
    assert not answer.empty
    host = standin.url.split("//", 1)[1].split("/", 1)[0]
    assert len(proxy.seen) == 1 and host in proxy.seen[0]  # the one socket went through it
    assert standin.stats.connections == 1
