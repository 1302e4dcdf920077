"""Schedule providers: fallbacks, 24/7 classes, Dukascopy details (fake source and a local HTTP
server), the registry for ``.bi5``, time-outs, failures, reloads and logging once."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs
from tickpipe_shared.config import Settings
from tickpipe_shared.instruments.catalog import RegistryUnavailableError, fallback_schedule
from tickpipe_shared.instruments.details import InstrumentDetail
from tickpipe_shared.instruments.registry import InstrumentRegistry
from tickpipe_shared.instruments.schedule import (
    ALWAYS_OPEN,
    DAY_MS,
    FX_DEFAULT_SCHEDULE,
    HOUR_MS,
    WEEK_MS,
    TradingSchedule,
)
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import BatchMeta
from tickpipe_validator.schedules import DetailSchedules, ScheduleProvider, StaticSchedules

T0 = 1_549_238_400_000  # 2019-02-04T00:00:00Z, a Monday
SAT = T0 + 5 * DAY_MS
HOLIDAY = (T0 + 10 * HOUR_MS, T0 + 12 * HOUR_MS)


def detail_body(code: str = "EUR-USD", group: str = "FX_MAJORS", holidays: Any = None) -> dict:
    """An instrument detail as the JSON API serves it: the FX week in New York time."""
    session = {"start": "17:00:00", "previousDayStart": True, "end": "17:00:00"}
    days = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY"]
    return {
        "code": code,
        "groupCode": group,
        "defaultTimezone": "America/New_York",
        "tradeSchedule": [
            {"id": "t", "from": None, "to": None, "sessions": {d: [session] for d in days}}
        ],
        "holidays": [{"from": HOLIDAY[0], "till": HOLIDAY[1]}] if holidays is None else holidays,
        "histories": [],
    }


def detail(code: str = "EUR-USD", **kw: Any) -> InstrumentDetail:
    return InstrumentDetail.parse(code, detail_body(code, **kw))


REGISTRY_BODY = {
    "instruments": [
        {"code": "EUR-USD", "pipValue": 0.0001, "priceScale": 5, "groupId": "fx"},
        {"code": "BTC-USD", "pipValue": 1, "priceScale": 1, "groupId": "crypto"},
        {"code": "XAU-USD", "pipValue": 0.01, "priceScale": 3, "groupId": "metal"},
    ],
    "groups": [
        {"id": "fx", "code": "FX_MAJORS"},
        {"id": "crypto", "code": "VCCY"},
        {"id": "metal", "code": "FX_METALS"},
    ],
}


def meta(
    instrument: str = "EURUSD",
    source: str = "dukascopy-json",
    source_code: str = "EUR-USD",
    asset_class: str = "",
) -> BatchMeta:
    return BatchMeta(
        Unit(source, instrument, "ticks", T0, T0 + HOUR_MS),
        0,
        1,
        0,
        5,
        "00" * 32,
        "r",
        T0,
        T0,
        source_code=source_code,
        asset_class=asset_class,
    )


class FakeDetails:
    """Details by code; ``gate`` (when set) holds every ``get`` until released."""

    def __init__(self, details: dict[str, InstrumentDetail | None]) -> None:
        self.details = details
        self.asked: list[str] = []
        self.gate: asyncio.Event | None = None
        self.error: Exception | None = None

    async def get(self, code: str) -> InstrumentDetail | None:
        self.asked.append(code)
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.details.get(code)


class FakeRegistry:
    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    async def __call__(self, settings: Settings) -> InstrumentRegistry:
        self.calls += 1
        if self.fail:
            raise RegistryUnavailableError("no instrument metadata: test")
        return InstrumentRegistry.from_instruments_response(REGISTRY_BODY)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def open_minutes(schedule: TradingSchedule | None, a: int, b: int) -> int:
    assert schedule is not None
    return int(schedule.open_ms_between(a, b)) // 60_000


# --- fallbacks and the static provider ----------------------------------------------------------


def test_fallback_schedule_by_class_and_name() -> None:
    assert fallback_schedule("R_50", "synthetic") is ALWAYS_OPEN
    assert fallback_schedule("BTCUSD", "crypto") is ALWAYS_OPEN
    assert fallback_schedule("EURUSD", "fx") is FX_DEFAULT_SCHEDULE
    assert fallback_schedule("EURUSD", "") is FX_DEFAULT_SCHEDULE
    assert fallback_schedule("XAUUSD", "metal") is None
    assert fallback_schedule("AAPL", "stock") is None


def test_always_open_counts_every_minute_across_weeks() -> None:
    # Saturday 12:00 → the next Tuesday 12:00, across the weekly window's boundary.
    a, b = SAT + 12 * HOUR_MS, SAT + 3 * DAY_MS + 12 * HOUR_MS
    assert open_minutes(ALWAYS_OPEN, a, b) == 3 * 24 * 60
    assert ALWAYS_OPEN.is_open([SAT, T0 + WEEK_MS, T0 - 1]).all()


async def test_static_provider_default_and_lookup() -> None:
    s = StaticSchedules()
    assert isinstance(s, ScheduleProvider)
    await s.prepare([meta()])
    assert s.schedule_for(meta()) is FX_DEFAULT_SCHEDULE
    assert s.schedule_for(meta("R_50", "deriv", "R_50", "synthetic")) is ALWAYS_OPEN
    assert StaticSchedules(lambda name: None).schedule_for(meta()) is None


# --- DetailSchedules with a fake detail source ----------------------------------------------------


async def test_json_source_uses_source_code_and_loads_once() -> None:
    details = FakeDetails({"EUR-USD": detail()})
    registry = FakeRegistry()
    p = DetailSchedules(Settings(), details, registry)
    assert p.origin_of("EURUSD") is None
    for _ in range(3):
        await p.prepare([meta(), meta()])
        s = p.schedule_for(meta())
        # The detail's holiday closes two hours of Monday: the FX default knows no holidays.
        assert open_minutes(s, T0 + 9 * HOUR_MS, T0 + 13 * HOUR_MS) == 120
    assert details.asked == ["EUR-USD"]
    assert registry.calls == 0
    assert p.origin_of("EURUSD") == "detail EUR-USD"


async def test_bi5_source_finds_the_code_in_the_registry() -> None:
    details = FakeDetails({"EUR-USD": detail(), "BTC-USD": None})
    registry = FakeRegistry()
    p = DetailSchedules(Settings(), details, registry)
    bi5 = meta(source="dukascopy-bi5", source_code="EURUSD")
    btc = meta("BTCUSD", source="dukascopy-bi5", source_code="BTCUSD")
    gold = meta("XAUUSD", source="dukascopy-bi5", source_code="XAUUSD")
    await p.prepare([bi5, btc, gold])
    assert sorted(details.asked) == ["BTC-USD", "EUR-USD", "XAU-USD"]
    assert registry.calls == 1
    assert open_minutes(p.schedule_for(bi5), HOLIDAY[0], HOLIDAY[1]) == 0
    # No detail: the registry's asset class makes BTC 24/7; gold has no default schedule.
    assert p.schedule_for(btc) is ALWAYS_OPEN
    assert p.schedule_for(gold) is None
    assert p.origin_of("BTCUSD") == "fallback"


async def test_detail_without_schedule_falls_back_by_the_details_class() -> None:
    body = detail_body("ETH-USD", group="VCCY")
    del body["tradeSchedule"]
    details = FakeDetails({"ETH-USD": InstrumentDetail.parse("ETH-USD", body)})
    p = DetailSchedules(Settings(), details, FakeRegistry())
    m = meta("ETHUSD", source_code="ETH-USD")
    await p.prepare([m])
    assert p.schedule_for(m) is ALWAYS_OPEN


async def test_other_sources_need_no_detail() -> None:
    details = FakeDetails({})
    p = DetailSchedules(Settings(), details, FakeRegistry())
    deriv = meta("R_50", "deriv", "R_50", "synthetic")
    deriv_fx = meta("EURUSD", "deriv", "frxEURUSD", "fx")
    stock = meta("AAPL", "polygon", "AAPL", "stock")
    await p.prepare([deriv, deriv_fx, stock])
    assert details.asked == []
    assert p.schedule_for(deriv) is ALWAYS_OPEN
    assert p.schedule_for(deriv_fx) is FX_DEFAULT_SCHEDULE
    assert p.schedule_for(stock) is None


async def test_unprepared_dukascopy_instrument_gets_the_fallback_without_io() -> None:
    details = FakeDetails({"EUR-USD": detail()})
    p = DetailSchedules(Settings(), details, FakeRegistry())
    assert p.schedule_for(meta()) is FX_DEFAULT_SCHEDULE
    assert details.asked == []


async def test_slow_detail_times_out_falls_back_then_arrives() -> None:
    details = FakeDetails({"EUR-USD": detail()})
    details.gate = asyncio.Event()
    p = DetailSchedules(Settings(), details, FakeRegistry(), timeout_s=0.05)
    with capture_logs() as logs:
        await asyncio.wait_for(p.prepare([meta()]), 2)
        assert p.schedule_for(meta()) is FX_DEFAULT_SCHEDULE
        await p.prepare([meta()])  # still loading: no second load, no second warning
    assert details.asked == ["EUR-USD"]
    timeouts = [e for e in logs if e["event"].startswith("trading schedule not loaded in time")]
    assert len(timeouts) == 1 and timeouts[0]["instrument"] == "EURUSD"
    details.gate.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert open_minutes(p.schedule_for(meta()), HOLIDAY[0], HOLIDAY[1]) == 0
    assert p.origin_of("EURUSD") == "detail EUR-USD"


async def test_failing_detail_source_falls_back_and_logs_once() -> None:
    details = FakeDetails({})
    details.error = OSError("disk full")
    clock = Clock()
    p = DetailSchedules(Settings(), details, FakeRegistry(), refresh_s=600, clock=clock)
    with capture_logs() as logs:
        await p.prepare([meta()])
        assert p.schedule_for(meta()) is FX_DEFAULT_SCHEDULE
        clock.now += 601  # retried after the refresh interval, in the background
        await p.prepare([meta()])
        for _ in range(10):
            await asyncio.sleep(0)
    assert details.asked == ["EUR-USD", "EUR-USD"]
    errors = [e for e in logs if e["event"].startswith("trading schedule could not be loaded")]
    assert len(errors) == 1 and errors[0]["error"] == "disk full"


async def test_registry_unavailable_falls_back_and_is_retried_later() -> None:
    registry = FakeRegistry(fail=True)
    clock = Clock()
    p = DetailSchedules(Settings(), FakeDetails({}), registry, refresh_s=600, clock=clock)
    bi5 = meta(source="dukascopy-bi5", source_code="EURUSD")
    xau = meta("XAUUSD", source="dukascopy-bi5", source_code="XAUUSD")
    with capture_logs() as logs:
        await p.prepare([bi5, xau])
    assert p.schedule_for(bi5) is FX_DEFAULT_SCHEDULE
    assert p.schedule_for(xau) is None
    assert registry.calls == 1  # once for both instruments
    assert any(e["event"] == "instrument registry unavailable for schedules" for e in logs)


async def test_unknown_instrument_in_registry_falls_back() -> None:
    p = DetailSchedules(Settings(), FakeDetails({}), FakeRegistry())
    odd = meta("ZZZUSD", source="dukascopy-bi5", source_code="ZZZUSD")
    with capture_logs() as logs:
        await p.prepare([odd])
    assert p.schedule_for(odd) is None
    assert [e["event"] for e in logs if e.get("instrument") == "ZZZUSD"] == ["not in the registry"]


async def test_loaded_schedule_is_reloaded_in_the_background_after_refresh() -> None:
    details = FakeDetails({"EUR-USD": detail()})
    clock = Clock()
    p = DetailSchedules(Settings(), details, FakeRegistry(), refresh_s=600, clock=clock)
    await p.prepare([meta()])
    assert open_minutes(p.schedule_for(meta()), HOLIDAY[0], HOLIDAY[1]) == 0
    details.details["EUR-USD"] = detail(holidays=[])  # the holiday was withdrawn
    clock.now += 300
    await p.prepare([meta()])
    assert details.asked == ["EUR-USD"]  # not due yet
    clock.now += 301
    details.gate = asyncio.Event()
    await p.prepare([meta()])  # starts the reload and returns at once
    assert open_minutes(p.schedule_for(meta()), HOLIDAY[0], HOLIDAY[1]) == 0  # old one meanwhile
    details.gate.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert open_minutes(p.schedule_for(meta()), HOLIDAY[0], HOLIDAY[1]) == 120
    assert details.asked == ["EUR-USD", "EUR-USD"]


def test_refresh_interval_follows_the_cache_ttl_with_a_floor() -> None:
    assert DetailSchedules(Settings(instrument_cache_ttl_s=7200), FakeDetails({})).refresh_s == 7200
    assert DetailSchedules(Settings(instrument_cache_ttl_s=0), FakeDetails({})).refresh_s == 300


# --- the real InstrumentDetails and registry loader against a local HTTP server ------------------


async def test_details_and_registry_served_over_http(tmp_path: Path) -> None:
    hits: list[str] = []

    async def instruments(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response(REGISTRY_BODY)

    async def one(request: web.Request) -> web.Response:
        hits.append(request.path)
        code = request.match_info["code"]
        if code != "EUR-USD":
            return web.Response(status=404)
        return web.Response(body=json.dumps(detail_body(code)), content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/instruments", instruments)
    app.router.add_get("/v1/instruments/{code}", one)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        settings = Settings(
            dukascopy_json_url=str(server.make_url("/v1")), instrument_cache_dir=str(tmp_path)
        )
        p = DetailSchedules(settings)
        bi5 = meta(source="dukascopy-bi5", source_code="EURUSD")
        gold = meta("XAUUSD", source="dukascopy-bi5", source_code="XAUUSD")
        await p.prepare([bi5, gold])
        await p.prepare([bi5, gold])
    finally:
        await server.close()
    assert sorted(hits) == ["/v1/instruments", "/v1/instruments/EUR-USD", "/v1/instruments/XAU-USD"]
    assert open_minutes(p.schedule_for(bi5), T0 + 9 * HOUR_MS, T0 + 13 * HOUR_MS) == 120
    assert p.schedule_for(gold) is None
    assert (tmp_path / "details" / "EUR-USD.json").exists()


@pytest.mark.parametrize("source", ["dukascopy-json", "dukascopy-bi5"])
async def test_unreachable_api_without_cache_falls_back_quickly(
    tmp_path: Path, source: str
) -> None:
    with socket.socket() as sock:  # a port nobody listens on: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    settings = Settings(dukascopy_json_url=url, instrument_cache_dir=str(tmp_path))
    p = DetailSchedules(settings, timeout_s=2)
    m = meta(source=source, source_code="EUR-USD" if source == "dukascopy-json" else "EURUSD")
    await asyncio.wait_for(p.prepare([m]), 5)
    assert p.schedule_for(m) is FX_DEFAULT_SCHEDULE
