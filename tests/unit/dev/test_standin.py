"""The stand-in Dukascopy server, run in-process on an ephemeral port.

Uses ``../shared/data/dukascopy`` when present, else a small tree built in ``tmp_path`` with a
self-made ``.bi5`` file and JSON responses at the same relative paths.
"""

from __future__ import annotations

import asyncio
import json
import lzma
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from support.shared_data import locate_shared_dir
from tickpipe_decoder.formats.dukascopy_bi5 import BI5_TICK_DTYPE, decode_bi5_ticks
from tickpipe_decoder.formats.dukascopy_json import decode_json_candles, decode_json_ticks
from tickpipe_dev.standin.main import _missing, parse_args
from tickpipe_dev.standin.server import Faults, Missing, StandinServer, start_standin

TICK_FILE = "bi5/EURUSD/2019/01/04/00h_ticks.bi5"
JSON_TICKS = "json/ticks/EUR-USD/2026/7/13/12.json"
HOUR_2019_02_04 = 1549238400000


def _build_tree(root: Path) -> None:
    recs = np.array([(994, 114545, 114543, 1.0, 2.06), (1271, 114546, 114544, 1.0, 1.0)],
                    dtype=BI5_TICK_DTYPE)  # fmt: skip
    (root / TICK_FILE).parent.mkdir(parents=True)
    (root / TICK_FILE).write_bytes(lzma.compress(recs.tobytes(), format=lzma.FORMAT_ALONE))
    ticks = {"timestamp": 1783944000000, "multiplier": 1e-5, "ask": 1.14277, "bid": 1.14273,
             "times": [93], "asks": [0], "bids": [0], "askVolumes": [1.8e6],
             "bidVolumes": [2.7e6]}  # fmt: skip
    (root / JSON_TICKS).parent.mkdir(parents=True)
    (root / JSON_TICKS).write_text(json.dumps(ticks))
    (root / "json/instruments").mkdir(parents=True)
    (root / "json/instruments/EUR-USD.json").write_text(json.dumps({"code": "EUR-USD"}))
    (root / "meta").mkdir()
    meta = {"instruments": [{"code": "EUR-USD", "priceScale": 5},
                            {"code": "SPY.US-USD", "priceScale": None}]}  # fmt: skip
    (root / "meta/raw-meta-data-2026-07-13.json").write_text(json.dumps(meta))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    shared = locate_shared_dir()
    if shared is not None:
        return shared / "data" / "dukascopy"
    _build_tree(tmp_path)
    return tmp_path


# Async fixtures default to the session loop (asyncio_default_fixture_loop_scope); these run in
# each test's own loop, like the tests.
@pytest_asyncio.fixture(loop_scope="function")
async def server(root: Path) -> AsyncIterator[StandinServer]:
    srv = await start_standin(root, "127.0.0.1", 0)
    try:
        yield srv
    finally:
        await srv.stop()


@pytest_asyncio.fixture(loop_scope="function")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes, aiohttp.ClientResponse]:
    async with http.get(url) as resp:
        return resp.status, await resp.read(), resp


async def control(
    http: aiohttp.ClientSession, srv: StandinServer, **body: object
) -> dict[str, object]:
    async with http.post(f"{srv.url}/_control", json=body) as resp:
        assert resp.status == 200, await resp.text()
        result: dict[str, object] = await resp.json()
        return result


async def test_ephemeral_port_and_healthz(
    server: StandinServer, http: aiohttp.ClientSession
) -> None:
    assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
    assert server.datafeed_url.endswith("/datafeed") and server.json_url.endswith("/v1")
    status, body, _ = await get(http, f"{server.url}/healthz")
    assert (status, body) == (200, b"ok")


async def test_bi5_file(server: StandinServer, http: aiohttp.ClientSession, root: Path) -> None:
    status, body, resp = await get(http, f"{server.datafeed_url}/EURUSD/2019/01/04/00h_ticks.bi5")
    assert status == 200 and resp.content_type == "application/octet-stream"
    assert body == (root / TICK_FILE).read_bytes()
    assert len(decode_bi5_ticks(body, HOUR_2019_02_04)) > 0


async def test_missing_bi5(server: StandinServer, http: aiohttp.ClientSession) -> None:
    status, body, _ = await get(http, f"{server.datafeed_url}/EURUSD/2030/00/01/00h_ticks.bi5")
    assert (status, body) == (200, b"")  # closed hour: 200 with a 0-byte body
    status, _, _ = await get(http, f"{server.datafeed_url}/EURUSD/2030/BID_candles_day_1.bi5")
    assert status == 404
    await control(http, server, missing={"bi5": "404"})
    status, _, _ = await get(http, f"{server.datafeed_url}/EURUSD/2030/00/01/00h_ticks.bi5")
    assert status == 404


async def test_no_path_traversal(server: StandinServer, http: aiohttp.ClientSession) -> None:
    for path in ("/datafeed/EURUSD/..%2F..%2Fmeta%2Fraw-meta-data-2026-07-13.json",
                 "/v1/..%2Fmeta%2Fraw-meta-data-2026-07-13"):  # fmt: skip
        async with http.get(f"{server.url}{path}") as resp:
            assert resp.status == 404, path


async def test_json_files(server: StandinServer, http: aiohttp.ClientSession, root: Path) -> None:
    status, body, resp = await get(http, f"{server.json_url}/ticks/EUR-USD/2026/7/13/12")
    assert status == 200 and resp.content_type == "application/json"
    assert body == (root / JSON_TICKS).read_bytes()
    ticks, scale = decode_json_ticks(body)
    assert scale == 5 and len(ticks) > 0
    status, body, _ = await get(http, f"{server.json_url}/instruments")
    assert status == 200 and any(i["code"] == "EUR-USD" for i in json.loads(body)["instruments"])
    status, body, _ = await get(http, f"{server.json_url}/instruments/EUR-USD")
    assert status == 200 and json.loads(body)["code"] == "EUR-USD"
    status, _, _ = await get(http, f"{server.json_url}/instruments/NOPE-USD")
    assert status == 404


async def test_missing_json(server: StandinServer, http: aiohttp.ClientSession) -> None:
    url = f"{server.json_url}/ticks/EUR-USD/2026/7/11/5"
    status, _, _ = await get(http, url)
    assert status == 404
    await control(http, server, missing={"json": "empty"})
    status, body, _ = await get(http, url)
    assert status == 200
    obj = json.loads(body)
    assert obj["timestamp"] == 1783746000000 and obj["times"] == [] and obj["ask"] is None
    ticks, scale = decode_json_ticks(body)
    assert len(ticks) == 0 and scale == 5
    status, body, _ = await get(http, f"{server.json_url}/candles/hour/EUR-USD/ASK/2026/8")
    candles, scale = decode_json_candles(body)
    assert len(candles) == 0 and scale == 5
    assert json.loads(body)["timestamp"] == 1785542400000 and json.loads(body)["shift"] == 3600000
    status, body, _ = await get(http, f"{server.json_url}/ticks/EUR-USD?from=1783746000000")
    assert status == 200 and json.loads(body)["timestamp"] == 1783746000000
    for bad in ("ticks/NOPE-USD/2026/7/11/5", "ticks/EUR-USD/2026/7/11",
                "ticks/EUR-USD/2026/13/1/0", "candles/week/EUR-USD/BID/2026",
                "candles/day/EUR-USD/MID/2026", "foo"):  # fmt: skip
        status, _, _ = await get(http, f"{server.json_url}/{bad}")
        assert status == 404, bad


async def test_status_faults(server: StandinServer, http: aiohttp.ClientSession) -> None:
    url = f"{server.datafeed_url}/EURUSD/2019/01/04/00h_ticks.bi5"
    await control(http, server, p_503=1.0)
    assert (await get(http, url))[0] == 503
    await control(http, server, reset=True, p_500=1.0)
    assert (await get(http, url))[0] == 500
    await control(http, server, reset=True, p_429=1.0, retry_after_s=7)
    status, _, resp = await get(http, url)
    assert status == 429 and resp.headers["Retry-After"] == "7"
    await control(http, server, reset=True, p_html=1.0)
    status, body, resp = await get(http, url)
    assert (
        status == 200 and resp.content_type == "text/html" and body.startswith(b"<!DOCTYPE html>")
    )
    # Control endpoints and /healthz are never faulted.
    assert (await get(http, f"{server.url}/healthz"))[0] == 200


async def test_truncation(server: StandinServer, http: aiohttp.ClientSession, root: Path) -> None:
    url = f"{server.datafeed_url}/EURUSD/2019/01/04/00h_ticks.bi5"
    full = (root / TICK_FILE).read_bytes()
    await control(http, server, p_truncate=1.0, truncate_mode="short")
    status, body, _ = await get(http, url)
    assert status == 200 and body == full[: len(full) // 2]
    await control(http, server, truncate_mode="abort")
    with pytest.raises(aiohttp.ClientPayloadError):
        await get(http, url)
    await control(http, server, reset=True)
    assert (await get(http, url))[1] == full  # the server is still fine


async def test_latency(server: StandinServer, http: aiohttp.ClientSession) -> None:
    await control(http, server, latency_ms=150)
    t = time.monotonic()
    await get(http, f"{server.json_url}/instruments/EUR-USD")
    assert time.monotonic() - t >= 0.14


async def test_seeded_faults_are_reproducible(
    server: StandinServer, http: aiohttp.ClientSession
) -> None:
    url = f"{server.json_url}/instruments/EUR-USD"

    async def run() -> list[int]:
        await control(http, server, reset=True, p_500=0.3, p_429=0.3, seed=42)
        return [(await get(http, url))[0] for _ in range(30)]

    first = await run()
    assert first == await run()
    assert {200, 500, 429} <= set(first)


async def test_stats(server: StandinServer, http: aiohttp.ClientSession) -> None:
    t0 = time.time()
    await asyncio.gather(*(get(http, f"{server.json_url}/instruments/EUR-USD") for _ in range(5)))
    await get(http, f"{server.datafeed_url}/EURUSD/2019/BID_candles_day_2.bi5")
    await get(http, f"{server.url}/healthz")  # not counted
    async with http.get(f"{server.url}/_stats") as resp:
        stats = await resp.json()
    assert stats["total"] == 6
    assert stats["by_path"]["/v1/instruments/EUR-USD"] == {"200": 5}
    assert stats["by_path"]["/datafeed/EURUSD/2019/BID_candles_day_2.bi5"] == {"404": 1}
    assert stats["by_status"] == {"200": 5, "404": 1}
    assert all(t0 <= r["t"] <= time.time() for r in stats["requests"])
    assert 1 <= stats["max_in_flight"] <= 5
    async with http.delete(f"{server.url}/_stats") as resp:
        assert (await resp.json())["total"] == 0
    await control(http, server, reset_stats=True)
    assert server.stats.as_json()["total"] == 0


async def test_bad_control_requests(server: StandinServer, http: aiohttp.ClientSession) -> None:
    for body in ({"p_500": 2}, {"nope": 1}, {"p_500": "x"}, {"truncate_mode": "cut"},
                 {"missing": {"bi5": "maybe"}}, {"missing": {"zip": "404"}}, [1]):  # fmt: skip
        async with http.post(f"{server.url}/_control", json=body) as resp:
            assert resp.status == 400, body
            assert "error" in await resp.json()
    async with http.post(f"{server.url}/_control", data=b"{not json") as resp:
        assert resp.status == 400
    async with http.get(f"{server.url}/_control") as resp:
        assert (await resp.json())["faults"] == {**Faults().__dict__}


async def test_context_manager(root: Path, http: aiohttp.ClientSession) -> None:
    async with await start_standin(root, faults=Faults(p_503=1.0)) as srv:
        assert (await get(http, f"{srv.json_url}/instruments"))[0] == 503
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(http, f"{srv.url}/healthz")


def test_cli_parsing() -> None:
    args = parse_args(["--root", "/x", "--port", "0", "--p-503", "0.1", "--missing", "json=empty",
                       "--missing", "bi5=404", "--truncate-mode", "short"])  # fmt: skip
    assert args.port == 0 and args.p_503 == 0.1 and args.truncate_mode == "short"
    assert _missing(args.missing) == Missing(bi5="404", json="empty")
    with pytest.raises(Exception, match="expected bi5=empty"):
        _missing(["bi5=maybe"])
