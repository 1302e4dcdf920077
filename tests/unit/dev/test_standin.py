"""The stand-in server (Dukascopy and Polygon), run in-process on an ephemeral port.

Uses ``../shared/data/dukascopy`` and ``../shared/data/polygon`` when present, else small trees
built in ``tmp_path`` with self-made files at the same relative paths.
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
CANDLE_FILES = (
    "bi5/EURUSD/2019/01/04/BID_candles_min_1.bi5",
    "bi5/EURUSD/2019/01/BID_candles_hour_1.bi5",
    "bi5/EURUSD/2019/BID_candles_day_1.bi5",
)
JSON_CANDLES = "json/candles/minute/EUR-USD/BID/2026/7/10.json"


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
    candle = np.array([(0, 114545, 114550, 114540, 114560, 1.5)],
                      dtype=[("s", ">u4"), ("o", ">u4"), ("c", ">u4"), ("l", ">u4"),
                             ("h", ">u4"), ("v", ">f4")])  # fmt: skip
    for rel in CANDLE_FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(lzma.compress(candle.tobytes(), format=lzma.FORMAT_ALONE))
    candles = {"timestamp": 1783641600000, "multiplier": 1e-5, "open": 1.1, "high": 1.1,
               "low": 1.1, "close": 1.1, "shift": 60000, "times": [0], "opens": [0],
               "highs": [0], "lows": [0], "closes": [0], "volumes": [1.5]}  # fmt: skip
    (root / JSON_CANDLES).parent.mkdir(parents=True)
    (root / JSON_CANDLES).write_text(json.dumps(candles))
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


# --- candles and instrument details -----------------------------------------------------------


async def test_bi5_candle_files(
    server: StandinServer, http: aiohttp.ClientSession, root: Path
) -> None:
    for rel in CANDLE_FILES:
        status, body, resp = await get(http, f"{server.url}/datafeed/{rel.removeprefix('bi5/')}")
        assert status == 200 and resp.content_type == "application/octet-stream", rel
        assert body == (root / rel).read_bytes()
    # A candle file the tree lacks is 404 (before history), never a 0-byte "closed hour".
    status, _, _ = await get(http, f"{server.datafeed_url}/EURUSD/2030/00/ASK_candles_hour_1.bi5")
    assert status == 404


async def test_json_candles_and_empty_candle_buckets(
    server: StandinServer, http: aiohttp.ClientSession, root: Path
) -> None:
    status, body, _ = await get(http, f"{server.json_url}/candles/minute/EUR-USD/BID/2026/7/10")
    assert status == 200 and body == (root / JSON_CANDLES).read_bytes()
    await control(http, server, missing={"json": "empty"})
    for path, timestamp, shift in (
        ("candles/minute/EUR-USD/ASK/2030/1/2", 1893542400000, 60_000),
        ("candles/hour/EUR-USD/BID/2030/2", 1896134400000, 3_600_000),
        ("candles/day/EUR-USD/ASK/2030", 1893456000000, 86_400_000),
        ("candles/minute/EUR-USD/BID?from=1893542400000", 1893542400000, 60_000),
        ("candles/day/EUR-USD/BID?from=1893456000000", 1893456000000, 86_400_000),
    ):
        status, body, _ = await get(http, f"{server.json_url}/{path}")
        assert status == 200, path
        obj = json.loads(body)
        assert (obj["timestamp"], obj["shift"], obj["times"]) == (timestamp, shift, []), path
        assert [obj[k] for k in ("open", "high", "low", "close")] == [None] * 4
        candles, scale = decode_json_candles(body)
        assert len(candles) == 0 and scale == 5


async def test_instrument_detail_by_code(
    server: StandinServer, http: aiohttp.ClientSession, root: Path
) -> None:
    status, body, resp = await get(http, f"{server.json_url}/instruments/EUR-USD")
    assert status == 200 and resp.content_type == "application/json"
    assert body == (root / "json/instruments/EUR-USD.json").read_bytes()


# --- Polygon ----------------------------------------------------------------------------------

PAGED = "aggs_AAPL_1_minute_2023-07-31_limit10_page1_next_url.json"
DAILY = "aggs_AAPL_1_day_2005-04-01_2005-04-04.json"
DENIED = "error_NOT_AUTHORIZED_aggs_AAPL_1_day_2024-12-31_2024-12-31.json"
AGGS = "/v2/aggs/ticker"


def _build_polygon(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / DAILY).write_text(json.dumps(
        {"ticker": "AAPL", "results": [{"o": 1.5, "c": 1.46, "h": 1.51, "l": 1.45,
                                        "v": 6.4e8, "t": 1112331600000}],
         "status": "OK", "request_id": "r1", "count": 1}))  # fmt: skip
    (root / PAGED).write_text(json.dumps(
        {"ticker": "AAPL", "results": [{"o": 195.89, "c": 195.53, "h": 195.9, "l": 195.53,
                                        "v": 4428, "t": 1690790400000}],
         "status": "OK", "request_id": "r2", "count": 1,
         "next_url": "https://api.polygon.io/v2/aggs/ticker/AAPL/range/1/minute/"
                     "1690791480000/2023-07-31?cursor=bGltaXQ9MTAmc29ydD1hc2M"}))  # fmt: skip
    (root / DENIED).write_text(json.dumps(
        {"status": "NOT_AUTHORIZED", "request_id": "r3",
         "message": "Your plan doesn't include this data timeframe."}))  # fmt: skip
    (root / "MANIFEST.csv").write_text(
        "file,request,http_status\n"
        f"{DAILY},GET {AGGS}/AAPL/range/1/day/2005-04-01/2005-04-04 (no query params),200\n"
        f"{PAGED},GET {AGGS}/AAPL/range/1/minute/2023-07-31/2023-07-31?adjusted=true&sort=asc"
        "&limit=10 (reconstructed),200\n"
        f'{DENIED},"GET {AGGS}/AAPL/range/1/day/2024-12-31/2024-12-31 (future date)",'
        "403 (inferred: not stated)\n"
    )


@pytest.fixture
def polygon_root(tmp_path: Path) -> Path:
    shared = locate_shared_dir()
    if shared is not None and (shared / "data" / "polygon" / "MANIFEST.csv").is_file():
        return shared / "data" / "polygon"
    _build_polygon(tmp_path / "polygon")
    return tmp_path / "polygon"


@pytest_asyncio.fixture(loop_scope="function")
async def pserver(root: Path, polygon_root: Path) -> AsyncIterator[StandinServer]:
    srv = await start_standin(root, "127.0.0.1", 0, polygon_root=polygon_root)
    try:
        yield srv
    finally:
        await srv.stop()


async def test_polygon_recorded_request_served(
    pserver: StandinServer, http: aiohttp.ClientSession, polygon_root: Path
) -> None:
    expected = (polygon_root / DAILY).read_bytes()
    for bounds in ("2005-04-01/2005-04-04", "1112313600000/1112659199999"):
        url = f"{pserver.polygon_url}{AGGS}/AAPL/range/1/day/{bounds}?adjusted=true&sort=asc"
        status, body, resp = await get(http, url)
        assert (status, body, resp.content_type) == (200, expected, "application/json"), bounds


async def test_polygon_next_url_chain_on_the_standin_host(
    pserver: StandinServer, http: aiohttp.ClientSession, polygon_root: Path
) -> None:
    day = "1690761600000/1690847999999"  # the UTC day 2023-07-31, inclusive bounds
    url = f"{pserver.polygon_url}{AGGS}/AAPL/range/1/minute/{day}?adjusted=true&sort=asc&limit=5"
    status, body, _ = await get(http, url)
    recorded = json.loads((polygon_root / PAGED).read_bytes())
    page = json.loads(body)
    assert status == 200 and page["results"] == recorded["results"]
    assert page["next_url"] == recorded["next_url"].replace(
        "https://api.polygon.io", pserver.polygon_url
    )
    status, body, _ = await get(http, page["next_url"])
    last = json.loads(body)
    assert status == 200 and last["status"] == "OK"
    assert "results" not in last and "next_url" not in last


async def test_polygon_not_authorized_capture_is_403(
    pserver: StandinServer, http: aiohttp.ClientSession, polygon_root: Path
) -> None:
    status, body, _ = await get(
        http, f"{pserver.polygon_url}{AGGS}/AAPL/range/1/day/2024-12-31/2024-12-31"
    )
    assert (status, body) == (403, (polygon_root / DENIED).read_bytes())


async def test_polygon_other_ranges_and_bad_requests(
    pserver: StandinServer, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await get(
        http, f"{pserver.polygon_url}{AGGS}/C:EURUSD/range/5/minute/1600000000000/1600003599999"
    )
    obj = json.loads(body)
    assert status == 200 and obj["status"] == "OK" and obj["ticker"] == "C:EURUSD"
    assert "results" not in obj and obj["resultsCount"] == 0
    for bad in ("1/fortnight/2023-01-01/2023-01-02", "0/day/2023-01-01/2023-01-02",
                "1/day/yesterday/2023-01-02"):  # fmt: skip
        status, body, _ = await get(http, f"{pserver.polygon_url}{AGGS}/AAPL/range/{bad}")
        assert status == 400 and json.loads(body)["status"] == "ERROR", bad


async def test_polygon_bearer_key_checked_when_configured(
    pserver: StandinServer, http: aiohttp.ClientSession
) -> None:
    url = f"{pserver.polygon_url}{AGGS}/AAPL/range/1/day/2005-04-01/2005-04-04"
    state = await control(http, pserver, polygon_api_key="k-123")
    assert state["polygon_auth"] is True and "k-123" not in json.dumps(state)
    status, body, _ = await get(http, url)
    assert status == 401 and json.loads(body)["error"] == "API Key was not provided"
    async with http.get(url, headers={"Authorization": "Bearer wrong"}) as resp:
        assert resp.status == 401 and (await resp.json())["error"] == "Unknown API Key"
    async with http.get(url, headers={"Authorization": "Bearer k-123"}) as resp:
        assert resp.status == 200
    assert (await get(http, f"{url}?apiKey=k-123"))[0] == 200
    await control(http, pserver, polygon_api_key=None)
    assert (await get(http, url))[0] == 200


async def test_polygon_delayed_status_on_every_ok_page(
    pserver: StandinServer, http: aiohttp.ClientSession, polygon_root: Path
) -> None:
    daily = f"{pserver.polygon_url}{AGGS}/AAPL/range/1/day/2005-04-01/2005-04-04"
    day = "1690761600000/1690847999999"
    paged = f"{pserver.polygon_url}{AGGS}/AAPL/range/1/minute/{day}?sort=asc&limit=5"
    denied = f"{pserver.polygon_url}{AGGS}/AAPL/range/1/day/2024-12-31/2024-12-31"
    state = await control(http, pserver, polygon_status="DELAYED")
    assert state["polygon_status"] == "DELAYED"
    status, body, _ = await get(http, daily)
    page = json.loads(body)
    recorded = json.loads((polygon_root / DAILY).read_bytes())
    assert status == 200 and page["status"] == "DELAYED"
    assert page["results"] == recorded["results"]  # only the status differs
    _, body, _ = await get(http, paged)
    first = json.loads(body)
    assert first["status"] == "DELAYED" and first["next_url"].startswith(pserver.polygon_url)
    _, body, _ = await get(http, first["next_url"])
    assert json.loads(body)["status"] == "DELAYED"  # the empty last page too
    status, body, _ = await get(http, denied)
    assert status == 403 and json.loads(body)["status"] == "NOT_AUTHORIZED"  # errors untouched
    async with http.post(f"{pserver.url}/_control", json={"polygon_status": "LATE"}) as resp:
        assert resp.status == 400 and "polygon_status" in (await resp.json())["error"]
    await control(http, pserver, polygon_status="OK")
    assert json.loads((await get(http, daily))[1])["status"] == "OK"


async def test_polygon_faults_apply(pserver: StandinServer, http: aiohttp.ClientSession) -> None:
    url = f"{pserver.polygon_url}{AGGS}/AAPL/range/1/day/2005-04-01/2005-04-04"
    await control(http, pserver, p_429=1.0, retry_after_s=3)
    status, _, resp = await get(http, url)
    assert status == 429 and resp.headers["Retry-After"] == "3"
    assert pserver.stats.as_json()["by_path"][url.removeprefix(pserver.url)] == {"429": 1}


async def test_polygon_routes_absent_without_captures(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    _build_tree(tmp_path / "dukascopy")
    async with await start_standin(tmp_path / "dukascopy") as srv:
        status, _, _ = await get(http, f"{srv.url}{AGGS}/AAPL/range/1/day/2005-04-01/2005-04-04")
        assert status == 404


async def test_deriv_standin_mounted(server: StandinServer, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(f"{server.deriv_url}?app_id=1089") as ws:
        await ws.send_json({"ping": 1, "req_id": 7})
        reply = await ws.receive_json(timeout=5)
    assert (reply["msg_type"], reply["req_id"]) == ("ping", 7)
    async with http.get(f"{server.url}/_deriv/stats") as resp:
        assert resp.status == 200
    assert server.stats.as_json()["total"] == 0  # sockets keep their own stats
