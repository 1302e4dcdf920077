"""The fetcher over real HTTP against the in-process stand-in serving the recorded payloads of
``../shared/data`` (skipped without them): Dukascopy candle units of both sources, Polygon
pages with the Bearer key, Deriv units over the WebSocket, and the planner with instrument
details from the stand-in.

No Kafka, no database: the planner and the downloader are driven directly.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from support.shared_data import SHARED_MISSING, locate_shared_dir
from tickpipe_dev.standin import server as standin
from tickpipe_fetcher.downloader import Downloader
from tickpipe_fetcher.http import AiohttpTransport
from tickpipe_fetcher.main import configured_sources
from tickpipe_fetcher.planner import Planner
from tickpipe_fetcher.sources import DukascopyBi5, DukascopyJson, PolygonSource, Source
from tickpipe_shared.config import Settings
from tickpipe_shared.instruments import InstrumentRegistry
from tickpipe_shared.instruments.catalog import load_registry
from tickpipe_shared.kafka.records import OutRecord
from tickpipe_shared.units import Unit, plan_units
from tickpipe_shared.wire.fetch_units import FetchUnit
from tickpipe_shared.wire.progress import RequestPlanned, decode_progress
from tickpipe_shared.wire.raw import RawPayloadMeta

KEY = "pk_standin_secret"


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[arg-type,misc]


@pytest.fixture(scope="module")
def data() -> Path:
    shared = locate_shared_dir()
    if shared is None or not (shared / "data" / "polygon").is_dir():
        pytest.skip(SHARED_MISSING)
    return shared / "data"


@pytest.fixture
async def server(data: Path) -> AsyncIterator[standin.StandinServer]:
    srv = await standin.start_standin(data / "dukascopy", polygon_api_key=KEY)
    try:
        yield srv
    finally:
        await srv.stop()


@dataclass
class Rec:
    value: bytes | None
    key: bytes | None = b"k"
    topic: str = "tickpipe.fetch-units"
    partition: int = 0
    offset: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def unit(source: str, kind: str, day: tuple[int, int, int], code: str,
         market_open: bool | None = None) -> Rec:  # fmt: skip
    [u] = plan_units(source, "EURUSD", kind, ms(*day), ms(*day) + 1)
    fu = FetchUnit(
        "req-int",
        Unit(source, u.instrument, kind, u.start_ms, u.end_ms),
        code,
        5,
        "fx",
        market_open,
    )
    return Rec(fu.to_json())


async def download(
    srv: standin.StandinServer, sources: dict[str, Source], records: Sequence[Rec], **kw: Any
) -> tuple[list[OutRecord], list[BaseException]]:
    failed: list[BaseException] = []

    def failure(record: Any, error: BaseException, attempts: int) -> OutRecord:
        failed.append(error)
        return OutRecord("tickpipe.failures", record.key, str(error).encode())

    settings = Settings(**{"fetch_rate_per_host": 0, "fetch_backoff_base_s": 0.01,
                           "fetch_backoff_max_s": 0.02, "fetch_attempts": 3, **kw})  # fmt: skip
    transport = AiohttpTransport(settings)
    try:
        return await Downloader(settings, sources, transport, failure).process(records), failed
    finally:
        await transport.close()


async def test_dukascopy_candle_units(server: standin.StandinServer, data: Path) -> None:
    bi5, js = DukascopyBi5(server.datafeed_url), DukascopyJson(server.json_url)
    records = [
        unit("dukascopy-bi5", "candles:1m:bid", (2019, 2, 4), "EURUSD"),
        unit("dukascopy-bi5", "candles:1h:bid", (2019, 1, 1), "EURUSD"),
        unit("dukascopy-bi5", "candles:1d:bid", (2018, 1, 1), "EURUSD"),
        unit("dukascopy-bi5", "candles:1d:ask", (2018, 1, 1), "EURUSD"),  # no file: 404
        unit("dukascopy-json", "candles:1m:bid", (2026, 7, 10), "EUR-USD", market_open=True),
        unit("dukascopy-json", "candles:1m:bid", (2026, 7, 11), "EUR-USD", market_open=False),
        unit("dukascopy-json", "candles:1m:bid", (2026, 7, 11), "EUR-USD", market_open=True),
    ]
    outs, failed = await download(server, {"dukascopy-bi5": bi5, "dukascopy-json": js}, records)
    assert failed == []
    root = data / "dukascopy"
    expected = [
        (root / "bi5/EURUSD/2019/01/04/BID_candles_min_1.bi5").read_bytes(),
        (root / "bi5/EURUSD/2019/00/BID_candles_hour_1.bi5").read_bytes(),
        (root / "bi5/EURUSD/2018/BID_candles_day_1.bi5").read_bytes(),
        b"",
        (root / "json/candles/minute/EUR-USD/BID/2026/7/10.json").read_bytes(),
        (root / "json/candles/minute/EUR-USD/BID/2026/7/11.json").read_bytes(),
        (root / "json/candles/minute/EUR-USD/BID/2026/7/11.json").read_bytes(),
    ]
    assert [o.value for o in outs] == expected
    metas = [RawPayloadMeta.from_headers(o.headers) for o in outs]
    assert [m.format for m in metas] == ["dukascopy-bi5-candles"] * 4 + [
        "dukascopy-json-candles"
    ] * 3
    assert metas[1].url.endswith("/datafeed/EURUSD/2019/00/BID_candles_hour_1.bi5")
    assert metas[4].url.endswith("/v1/candles/minute/EUR-USD/BID/2026/7/10")
    # Saturday's empty bucket: plausible when closed, suspect (after every attempt) when open.
    assert [(m.suspect_empty, m.attempts) for m in metas[5:]] == [(0, 1), (1, 3)]


async def test_polygon_pages_with_bearer_key(server: standin.StandinServer) -> None:
    src = PolygonSource(server.polygon_url, SecretStr(KEY))
    day = ms(2023, 7, 31)
    fu = FetchUnit(
        "req-pg",
        Unit("polygon", "AAPL", "candles:1m:trade", day, day + 86_400_000),
        "AAPL",
        -1,
        "stock",
    )
    [out], failed = await download(server, {"polygon": src}, [Rec(fu.to_json())])
    assert failed == []
    pages = json.loads(out.value)
    assert len(pages) == 2 and len(pages[0]["results"]) == 10 and "results" not in pages[1]
    assert pages[0]["next_url"].startswith(server.polygon_url)  # the stand-in rewrote it
    meta = RawPayloadMeta.from_headers(out.headers)
    assert (meta.format, meta.price_scale, meta.suspect_empty) == ("polygon-aggs", -1, 0)
    paths = [r["path"] for r in server.stats.as_json()["requests"]]
    assert len(paths) == 2 and "cursor=" in paths[1]
    assert all(KEY not in p for p in paths)


async def test_polygon_wrong_key_fails_at_once(server: standin.StandinServer) -> None:
    src = PolygonSource(server.polygon_url, SecretStr("wrong-key"))
    day = ms(2023, 1, 1)
    fu = FetchUnit(
        "req-pg",
        Unit("polygon", "X:BTCUSD", "candles:1d:trade", day, ms(2024, 1, 1)),
        "X:BTCUSD",
        -1,
        "crypto",
        True,
    )
    [out], failed = await download(server, {"polygon": src}, [Rec(fu.to_json())])
    assert out.topic == "tickpipe.failures"
    [error] = failed
    assert "HTTP 401 ERROR" in str(error) and "Unknown API Key" in str(error)
    assert "wrong-key" not in str(error)
    assert server.stats.as_json()["total"] == 1


async def test_planner_uses_instrument_details_from_the_standin(
    server: standin.StandinServer, tmp_path: Path
) -> None:
    settings = Settings(dukascopy_json_url=server.json_url, instrument_cache_dir=str(tmp_path))

    async def registry() -> InstrumentRegistry:
        return await load_registry(settings)

    def failure(record: Any, error: BaseException, rid: str | None) -> OutRecord:
        raise AssertionError(f"unexpected failure: {error}")

    planner = Planner(settings, registry, {"dukascopy-json"}, failure)
    request = {"request_id": "plan-1", "source": "dukascopy-json", "instrument": "EURUSD",
               "from": "2003-05-04T00:00:00Z", "to": "2003-05-05T00:00:00Z"}  # fmt: skip
    out = await planner.process([Rec(json.dumps(request).encode())])
    planned = decode_progress(out[0].value)
    assert isinstance(planned, RequestPlanned)
    units = [FetchUnit.from_json(o.value) for o in out[1:]]
    # The detail's TICK history starts 2003-05-04 19:00:00.048: the hours before are left out.
    assert units[0].unit.start_ms == ms(2003, 5, 4, 19) and planned.units == len(units) == 5
    # Sunday 2003-05-04: the FX week opens at 17:00 New York (21:00 UTC in summer).
    assert [u.market_open for u in units] == [False, False, True, True, True]
    assert {(u.source_code, u.price_scale, u.asset_class) for u in units} == {("EUR-USD", 5, "fx")}
    assert (tmp_path / "details" / "EUR-USD.json").is_file()  # cached for the next time


async def test_deriv_units_through_the_generic_interface(server: standin.StandinServer) -> None:
    sources = configured_sources(Settings(deriv_url=server.deriv_url))
    assert "deriv" in sources  # the other sources default to their public hosts
    start = ms(2018, 7, 23, 10)
    records = [
        Rec(
            FetchUnit(
                "req-dv", Unit("deriv", "R_50", kind, start, end), "R_50", -1, "synthetic", True
            ).to_json()
        )
        for kind, end in (("ticks", start + 3_600_000), ("candles:1m:mid", ms(2018, 7, 24)))
    ]
    try:
        outs, failed = await download(server, sources, records)
    finally:
        await sources["deriv"].close()
    assert failed == []
    metas = [RawPayloadMeta.from_headers(o.headers) for o in outs]
    assert {m.format for m in metas} == {"deriv-ticks-history"}
    assert all(m.url.startswith(server.deriv_url) and m.suspect_empty == 0 for m in metas)
    assert all(json.loads(o.value) for o in outs)  # a JSON array of replies, not empty


async def test_a_failed_instrument_detail_is_retried_after_a_backoff_and_noted(
    server: standin.StandinServer, tmp_path: Path
) -> None:
    settings = Settings(dukascopy_json_url=server.json_url, instrument_cache_dir=str(tmp_path),
                        instrument_detail_retry_s=0.3)  # fmt: skip
    registry = await load_registry(settings)  # the list loads; then the host fails

    async def loaded() -> InstrumentRegistry:
        return registry

    def failure(record: Any, error: BaseException, rid: str | None) -> OutRecord:
        raise AssertionError(f"unexpected failure: {error}")

    planner = Planner(settings, loaded, {"dukascopy-json"}, failure)

    async def plan(rid: str) -> tuple[RequestPlanned, list[FetchUnit]]:
        request = {"request_id": rid, "source": "dukascopy-json", "instrument": "EURUSD",
                   "from": "2003-05-04T00:00:00Z", "to": "2003-05-05T00:00:00Z"}  # fmt: skip
        out = await planner.process([Rec(json.dumps(request).encode())])
        planned = decode_progress(out[0].value)
        assert isinstance(planned, RequestPlanned)
        return planned, [FetchUnit.from_json(o.value) for o in out[1:]]

    server.faults = server.faults.updated({"p_500": 1.0})
    planned, units = await plan("no-detail")
    assert (
        len(planned.notes) == 1 and "without the instrument detail of EUR-USD" in planned.notes[0]
    )
    assert units[0].unit.start_ms == ms(2003, 5, 4, 0)  # no history clamp without the detail
    server.faults = server.faults.updated({"p_500": 0.0})
    planned, _ = await plan("still-backing-off")  # within the backoff: not asked again
    assert planned.notes and not (tmp_path / "details" / "EUR-USD.json").exists()
    await asyncio.sleep(0.4)  # the backoff (seconds here, minutes by default), not the 1-day TTL
    planned, units = await plan("with-detail")
    assert planned.notes == [] and units[0].unit.start_ms == ms(2003, 5, 4, 19)


async def test_polygon_straddling_bar_is_asked_for_its_whole_span(
    server: standin.StandinServer,
) -> None:
    """A 7m unit (a day: 1440 is no multiple of 7) is asked up to the end of the bar holding
    midnight; the stand-in answers the range, the raw payload is the whole answer."""
    src = PolygonSource(server.polygon_url, SecretStr(KEY))
    day = ms(2023, 7, 31)
    end = day + 86_400_000
    fu = FetchUnit("req-7m", Unit("polygon", "AAPL", "candles:7m:trade", day, end), "AAPL", -1,
                   "stock")  # fmt: skip
    [out], failed = await download(server, {"polygon": src}, [Rec(fu.to_json())])
    assert failed == []
    [path] = [r["path"] for r in server.stats.as_json()["requests"]]
    last_open = end - end % 420_000
    assert f"/range/7/minute/{day}/{last_open + 420_000 - 1}?" in path
    assert RawPayloadMeta.from_headers(out.headers).format == "polygon-aggs"
