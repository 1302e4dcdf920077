"""``tickpipe_fetcher.planner``: requests → fetch units, bad requests → failure records."""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from tickpipe_fetcher.planner import Planner
from tickpipe_shared.config import Settings
from tickpipe_shared.instruments import InstrumentRegistry, UnknownInstrumentError
from tickpipe_shared.instruments.catalog import RegistryUnavailableError
from tickpipe_shared.instruments.details import InstrumentDetail
from tickpipe_shared.instruments.schedule import TradingSchedule
from tickpipe_shared.kafka.records import OutRecord, RetryableError
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.fetch_units import FetchUnit
from tickpipe_shared.wire.headers import decode_headers
from tickpipe_shared.wire.progress import RequestPlanned, decode_progress
from tickpipe_shared.wire.requests import RequestError

HOUR = 3_600_000
T0 = int(datetime(2019, 2, 4, tzinfo=UTC).timestamp() * 1000)
REGISTRY = InstrumentRegistry.from_instruments_response(
    {
        "instruments": [
            {"code": "EUR-USD", "pipValue": 0.0001, "priceScale": 5},
            {"code": "USA500.IDX-USD", "pipValue": 1, "priceScale": 3},
        ]
    }
)


@dataclass
class Rec:
    value: bytes | None
    key: bytes | None = b"EURUSD"
    topic: str = "tickpipe.fetch-requests"
    partition: int = 0
    offset: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class Loader:
    def __init__(self, result: InstrumentRegistry | BaseException = REGISTRY) -> None:
        self.result = result
        self.calls = 0

    async def __call__(self) -> InstrumentRegistry:
        self.calls += 1
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


failures: list[tuple[Any, BaseException, str | None]] = []


def failure(record: Any, error: BaseException, request_id: str | None) -> OutRecord:
    failures.append((record, error, request_id))
    return OutRecord("tickpipe.failures", record.key, str(error).encode())


@pytest.fixture(autouse=True)
def _clear() -> None:
    failures.clear()


class Details:
    """Instrument details by JSON API code (None: unknown); counts lookups."""

    def __init__(self, details: dict[str, InstrumentDetail] | None = None) -> None:
        self.details = details or {}
        self.calls: list[str] = []

    async def __call__(self, code: str) -> InstrumentDetail | None:
        self.calls.append(code)
        return self.details.get(code)


class Ledger:
    """Done unit starts per (instrument, kind); records the queries."""

    def __init__(self, done: set[int] | BaseException | None = None) -> None:
        self.done = done if done is not None else set()
        self.calls: list[tuple[str, str, int, int]] = []

    async def done_units(self, instrument: str, kind: str, from_ms: int, to_ms: int) -> set[int]:
        self.calls.append((instrument, kind, from_ms, to_ms))
        if isinstance(self.done, BaseException):
            raise self.done
        return set(self.done)


#: The planner's "now": long after the 2019 requests of these tests.
NOW_S = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


def planner(
    loader: Loader | None = None,
    sources: set[str] | None = None,
    details: Details | None = None,
    ledger: Ledger | None = None,
    now_s: float = NOW_S,
) -> tuple[Planner, Loader]:
    loader = loader or Loader()
    p = Planner(
        Settings(),
        loader,
        {"dukascopy-json", "dukascopy-bi5"} if sources is None else sources,
        failure,
        details=details or Details(),
        ledger=ledger or Ledger(),
        clock=lambda: now_s,
    )
    return p, loader


def request(**kw: Any) -> bytes:
    data = {
        "request_id": "req-1",
        "source": "dukascopy-json",
        "instrument": "eur/usd",
        "from": "2019-02-04T00:30:00Z",
        "to": "2019-02-04T03:00:00Z",
    }
    data.update(kw)
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


def fetch_units(out: list[OutRecord]) -> list[OutRecord]:
    """The fetch-unit records among a planner's outputs."""
    return [o for o in out if o.topic == "tickpipe.fetch-units"]


async def test_valid_json_request_gives_planned_event_then_fetch_units() -> None:
    p, loader = planner()
    everything = await p.process([Rec(request())])
    assert loader.calls == 1
    planned = decode_progress(everything[0].value)
    assert everything[0].topic == "tickpipe.progress" and everything[0].key == b"req-1"
    assert isinstance(planned, RequestPlanned)
    assert (planned.request_id, planned.instrument, planned.units) == ("req-1", "EURUSD", 3)
    out = fetch_units(everything)
    assert [o.topic for o in out] == ["tickpipe.fetch-units"] * 3
    assert [o.key for o in out] == [
        b"dukascopy-json|EURUSD|ticks|2019-02-04T00:00:00Z",
        b"dukascopy-json|EURUSD|ticks|2019-02-04T01:00:00Z",
        b"dukascopy-json|EURUSD|ticks|2019-02-04T02:00:00Z",
    ]
    units = [FetchUnit.from_json(o.value) for o in out]
    assert units[0] == FetchUnit(
        request_id="req-1",
        unit=Unit("dukascopy-json", "EURUSD", "ticks", T0, T0 + HOUR),
        source_code="EUR-USD",
        price_scale=5,
        asset_class="",
        market_open=True,
    )
    assert [u.unit.start_ms for u in units] == [T0, T0 + HOUR, T0 + 2 * HOUR]
    assert all(decode_headers(o.headers) == {"request_id": "req-1"} for o in out)
    assert all(o.key == u.unit.key.encode() for o, u in zip(out, units, strict=True))
    assert failures == []


async def test_bi5_request_uses_legacy_symbol_and_scale() -> None:
    p, _ = planner()
    out = await p.process(
        [
            Rec(
                request(
                    source="dukascopy-bi5",
                    instrument="USA500.IDX-USD",
                    **{"from": "2019-02-04T00:00:00Z", "to": "2019-02-04T02:00:00Z"},
                )
            )
        ]
    )
    units = [FetchUnit.from_json(o.value) for o in fetch_units(out)]
    assert len(units) == 2
    assert {u.source_code for u in units} == {"USA500IDXUSD"}
    assert {u.price_scale for u in units} == {1}  # legacy scale from pipValue 1
    assert {u.unit.instrument for u in units} == {"USA500IDXUSD"}
    assert fetch_units(out)[0].key == b"dukascopy-bi5|USA500IDXUSD|ticks|2019-02-04T00:00:00Z"


async def test_json_request_same_instrument_keeps_json_scale() -> None:
    p, _ = planner()
    out = await p.process([Rec(request(instrument="USA500IDXUSD"))])
    u = FetchUnit.from_json(fetch_units(out)[0].value)
    assert (u.source_code, u.price_scale) == ("USA500.IDX-USD", 3)


async def test_registry_loaded_once() -> None:
    p, loader = planner()
    await p.process([Rec(request())])
    await p.process([Rec(request())])
    assert loader.calls == 1


async def test_unknown_instrument_is_failure_with_request_id() -> None:
    p, _ = planner()
    record = Rec(request(instrument="EURUSX", request_id="req-x"))
    [out] = await p.process([record])
    assert out.topic == "tickpipe.failures"
    [(rec, error, rid)] = failures
    assert rec is record and rid == "req-x"
    assert isinstance(error, UnknownInstrumentError)
    assert "did you mean EURUSD?" in str(error)


async def test_unconfigured_source_is_failure() -> None:
    p, _ = planner(sources={"dukascopy-json"})
    [out] = await p.process([Rec(request(source="dukascopy-bi5"))])
    [(_, error, rid)] = failures
    assert isinstance(error, RequestError) and rid == "req-1"
    assert str(error) == (
        "source 'dukascopy-bi5' is not configured on this fetcher (configured: dukascopy-json)"
    )
    assert out.topic == "tickpipe.failures"


async def test_no_source_configured_message() -> None:
    p, _ = planner(sources=set())
    await p.process([Rec(request())])
    assert "(configured: none)" in str(failures[0][1])


@pytest.mark.parametrize(
    ("value", "rid", "message"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"[1]", None, "must be a JSON object"),
        (b"", None, "empty fetch request"),
        (request(to="2019-02-04T00:00:00Z", request_id="req-inv"), "req-inv", "must be before"),
        (request(request_id=7, to="2019-02-04T00:00:00Z"), None, "request_id"),
        (request(instrument=..., request_id="req-m"), "req-m", "instrument: Field required"),
    ],
    ids=["bad-json", "not-object", "empty", "from-after-to", "numeric-request-id", "missing"],
)
async def test_bad_requests_are_failures(value: bytes, rid: str | None, message: str) -> None:
    p, _ = planner()
    [out] = await p.process([Rec(value)])
    assert out.topic == "tickpipe.failures"
    [(_, error, got_rid)] = failures
    assert isinstance(error, RequestError)
    assert message in str(error)
    assert got_rid == rid


async def test_bad_and_good_requests_in_one_batch() -> None:
    p, _ = planner()
    out = await p.process(
        [Rec(b"{"), Rec(request(to="2019-02-04T01:00:00Z")), Rec(request(instrument="NOPE"))]
    )
    assert [o.topic for o in out] == [
        "tickpipe.failures",
        "tickpipe.progress",
        "tickpipe.fetch-units",
        "tickpipe.failures",
    ]


async def test_registry_unavailable_is_retryable() -> None:
    p, loader = planner(Loader(RegistryUnavailableError("no instrument metadata")))
    with pytest.raises(RetryableError, match="no instrument metadata"):
        await p.process([Rec(request())])
    assert failures == []
    # Next time it works: loaded then.
    loader.result = REGISTRY
    out = await p.process([Rec(request())])
    assert len(fetch_units(out)) == 3 and loader.calls == 2


# --- kinds, clamping, market_open --------------------------------------------------------------

DAY = 24 * HOUR


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[arg-type,misc]


def units_of(out: list[OutRecord]) -> list[FetchUnit]:
    return [FetchUnit.from_json(o.value) for o in fetch_units(out)]


def planned_of(out: list[OutRecord]) -> RequestPlanned:
    event = decode_progress(out[0].value)
    assert isinstance(event, RequestPlanned)
    return event


def detail(
    schedule: TradingSchedule | None = None,
    starts: dict[str, int] | None = None,
    asset_class: str = "fx",
) -> InstrumentDetail:
    return InstrumentDetail("EUR-USD", schedule, starts or {}, "FX_MAJORS", asset_class)


@pytest.mark.parametrize(
    ("timeframe", "side", "kind", "frm", "to", "bounds"),
    [
        ("1m", None, "candles:1m:bid", "2019-02-04T10:00:00Z", "2019-02-06T01:00:00Z",
         [(2019, 2, 4), (2019, 2, 5), (2019, 2, 6), (2019, 2, 7)]),
        ("1h", "ask", "candles:1h:ask", "2019-01-15T00:00:00Z", "2019-03-02T00:00:00Z",
         [(2019, 1, 1), (2019, 2, 1), (2019, 3, 1), (2019, 4, 1)]),
        ("1d", "bid", "candles:1d:bid", "2018-06-01T00:00:00Z", "2019-06-01T00:00:00Z",
         [(2018, 1, 1), (2019, 1, 1), (2020, 1, 1)]),
    ],
)  # fmt: skip
async def test_candle_requests_give_calendar_units(
    timeframe: str,
    side: str | None,
    kind: str,
    frm: str,
    to: str,
    bounds: list[tuple[int, int, int]],
) -> None:
    p, _ = planner()
    out = await p.process(
        [
            Rec(
                request(
                    kind="candles", timeframe=timeframe, side=side or ..., to=to, **{"from": frm}
                )
            )
        ]
    )
    units = units_of(out)
    assert {u.unit.kind for u in units} == {kind} and planned_of(out).kind == kind
    edges = [ms(*b) for b in bounds]
    assert [(u.unit.start_ms, u.unit.end_ms) for u in units] == list(itertools.pairwise(edges))
    assert (fetch_units(out)[0].key or b"").decode().startswith(f"dukascopy-json|EURUSD|{kind}|")


async def test_range_clamped_to_the_history_start_of_the_kind() -> None:
    starts = {"TICK": ms(2019, 2, 4, 1, 30), "MINUTE": ms(2019, 2, 5, 12)}
    p, _ = planner(details=Details({"EUR-USD": detail(starts=starts)}))
    ticks = units_of(await p.process([Rec(request())]))  # 00:30 – 03:00
    assert [u.unit.start_ms for u in ticks] == [ms(2019, 2, 4, 1), ms(2019, 2, 4, 2)]
    out = await p.process(
        [
            Rec(
                request(
                    kind="candles",
                    timeframe="1m",
                    **{"from": "2019-02-01T00:00:00Z"},
                    to="2019-02-07T00:00:00Z",
                )
            )
        ]
    )
    assert [u.unit.start_ms for u in units_of(out)] == [ms(2019, 2, 5), ms(2019, 2, 6)]


async def test_request_entirely_before_history_plans_nothing() -> None:
    p, _ = planner(details=Details({"EUR-USD": detail(starts={"TICK": ms(2020, 1, 1)})}))
    out = await p.process([Rec(request())])
    assert fetch_units(out) == [] and planned_of(out).units == 0


async def test_market_open_from_the_detail_schedule() -> None:
    # Open Monday 00:00–01:00 UTC only.
    schedule = TradingSchedule.weekly([(0, HOUR)], "UTC")
    p, _ = planner(details=Details({"EUR-USD": detail(schedule, asset_class="fx")}))
    units = units_of(await p.process([Rec(request())]))  # Monday 2019-02-04 00:30 – 03:00
    assert [u.market_open for u in units] == [True, False, False]
    assert {u.asset_class for u in units} == {"fx"}  # the detail's, the registry has none


async def test_market_open_from_the_default_fx_week() -> None:
    p, _ = planner()
    # Friday 20:00 UTC → Sunday 23:00 UTC, winter: the FX week ends/starts at 22:00 UTC.
    out = await p.process(
        [Rec(request(**{"from": "2019-02-08T20:00:00Z"}, to="2019-02-10T23:00:00Z"))]
    )
    flags = [u.market_open for u in units_of(out)]
    assert flags == [True, True] + [False] * 48 + [True]


async def test_market_open_unknown_without_schedule() -> None:
    p, _ = planner()  # an index without a detail: no default schedule
    units = units_of(await p.process([Rec(request(instrument="USA500.IDX-USD"))]))
    assert {u.market_open for u in units} == {None}


async def test_range_ends_now_and_the_open_unit_is_judged_up_to_now() -> None:
    schedule = TradingSchedule.weekly([(HOUR + 45 * 60_000, 2 * HOUR)], "UTC")  # Mon 01:45–02:00
    now = ms(2019, 2, 4, 1, 30) / 1000
    p, _ = planner(details=Details({"EUR-USD": detail(schedule)}), now_s=now)
    units = units_of(await p.process([Rec(request())]))  # to 03:00, but now is 01:30
    assert [u.unit.start_ms for u in units] == [T0, T0 + HOUR]
    # Hour 01 is open at 01:45, but only [01:00, 01:30) has happened: no open time yet.
    assert [u.market_open for u in units] == [False, False]


async def test_slow_detail_falls_back_to_defaults_and_is_not_asked_again() -> None:
    calls: list[str] = []

    async def never(code: str) -> InstrumentDetail | None:
        calls.append(code)
        await asyncio.Event().wait()
        return None

    p = Planner(Settings(), Loader(), {"dukascopy-json"}, failure, details=never,
                ledger=Ledger(), clock=lambda: NOW_S, details_timeout_s=0.01)  # fmt: skip
    for _ in range(2):
        units = units_of(await p.process([Rec(request())]))
        assert [u.market_open for u in units] == [True] * 3  # the default FX week
    assert calls == ["EUR-USD"]


# --- Deriv and Polygon ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "instrument", "asset_class", "market_open", "kind", "timeframe"),
    [
        ("polygon", "C:EURUSD", "fx", None, "candles", "1d"),
        ("polygon", "X:BTCUSD", "crypto", True, "candles", "1h"),
        ("polygon", "I:NDX", "index", None, "candles", "1d"),
        ("polygon", "O:AAPL230616C00150000", "option", None, "candles", "1m"),
        ("polygon", "AAPL", "stock", None, "candles", "5m"),
        ("deriv", "frxEURUSD", "fx", None, "ticks", None),
        ("deriv", "cryBTCUSD", "crypto", True, "ticks", None),
        ("deriv", "OTC_NDX", "index", None, "ticks", None),
        ("deriv", "WLDAUD", "index", None, "ticks", None),
        ("deriv", "R_50", "synthetic", True, "ticks", None),
        ("deriv", "1HZ100V", "synthetic", True, "candles", "1m"),
        ("deriv", "BOOM1000", "synthetic", True, "ticks", None),
        ("deriv", "CRASH500", "synthetic", True, "ticks", None),
        ("deriv", "JD10", "synthetic", True, "ticks", None),
        ("deriv", "stpRNG", "synthetic", True, "ticks", None),
        ("deriv", "RDBEAR", "synthetic", True, "ticks", None),
        ("deriv", "RDBULL", "synthetic", True, "ticks", None),
        ("deriv", "XYZ", "", None, "ticks", None),
    ],
)
async def test_deriv_and_polygon_units_without_registry(
    source: str,
    instrument: str,
    asset_class: str,
    market_open: bool | None,
    kind: str,
    timeframe: str | None,
) -> None:
    loader = Loader(RegistryUnavailableError("no registry here"))
    details = Details()
    p, _ = planner(loader, sources={source}, details=details)
    out = await p.process(
        [Rec(request(source=source, instrument=instrument, kind=kind, timeframe=timeframe or ...))]
    )
    units = units_of(out)
    assert units and loader.calls == 0 and details.calls == []
    for u in units:
        assert (u.unit.instrument, u.source_code, u.price_scale) == (instrument, instrument, -1)
        assert (u.asset_class, u.market_open) == (asset_class, market_open)
    assert planned_of(out).instrument == instrument
    assert (fetch_units(out)[0].key or b"").decode().startswith(f"{source}|{instrument}|")


async def test_polygon_day_candles_are_year_units() -> None:
    p, _ = planner(sources={"polygon"})
    out = await p.process(
        [
            Rec(
                request(
                    source="polygon",
                    instrument="X:BTCUSD",
                    kind="candles",
                    timeframe="1d",
                    **{"from": "2023-01-01T00:00:00Z"},
                    to="2023-01-10T00:00:00Z",
                )
            )
        ]
    )
    [u] = units_of(out)
    assert (u.unit.kind, u.unit.start_ms, u.unit.end_ms) == (
        "candles:1d:trade",
        ms(2023, 1, 1),
        ms(2024, 1, 1),
    )


# --- skip_existing ----------------------------------------------------------------------------


async def test_skip_existing_leaves_out_done_units() -> None:
    ledger = Ledger({T0, T0 + 2 * HOUR})
    p, _ = planner(ledger=ledger)
    out = await p.process([Rec(request(skip_existing=True))])
    assert [u.unit.start_ms for u in units_of(out)] == [T0 + HOUR]
    planned = planned_of(out)
    assert (planned.units, planned.skipped) == (1, 2)
    assert ledger.calls == [("EURUSD", "ticks", T0, T0 + 3 * HOUR)]


async def test_skip_existing_with_candles_asks_for_the_kind() -> None:
    ledger = Ledger({ms(2019, 2, 4)})
    p, _ = planner(ledger=ledger)
    out = await p.process(
        [
            Rec(
                request(
                    kind="candles",
                    timeframe="1m",
                    side="ask",
                    skip_existing=True,
                    **{"from": "2019-02-04T00:00:00Z"},
                    to="2019-02-06T00:00:00Z",
                )
            )
        ]
    )
    assert [u.unit.start_ms for u in units_of(out)] == [ms(2019, 2, 5)]
    assert ledger.calls == [("EURUSD", "candles:1m:ask", ms(2019, 2, 4), ms(2019, 2, 6))]


async def test_ledger_not_asked_without_skip_existing() -> None:
    ledger = Ledger(RetryableError("down"))
    p, _ = planner(ledger=ledger)
    out = await p.process([Rec(request())])
    assert len(fetch_units(out)) == 3 and ledger.calls == []
    assert planned_of(out).skipped == 0


async def test_ledger_unreachable_is_retryable() -> None:
    p, _ = planner(ledger=Ledger(RetryableError("ingest log unreachable")))
    with pytest.raises(RetryableError, match="ingest log unreachable"):
        await p.process([Rec(request(skip_existing=True))])
    assert failures == []


async def test_a_request_cancelled_before_planning_is_refused() -> None:
    p, _ = planner()
    p.cancelled = lambda rid: rid == "req-1"
    out = await p.process([Rec(request())])
    assert [o.topic for o in out] == ["tickpipe.failures"]
    assert "req-1 was cancelled before it was planned" in str(failures[-1][1])
    assert len(fetch_units(await p.process([Rec(request(request_id="req-2"))]))) == 3


async def test_preview_is_the_plan_without_records() -> None:
    p, _ = planner()
    from tickpipe_shared.wire.requests import parse_request

    plan = await p.preview(parse_request(request()))
    assert (plan.kind, plan.target.name, plan.skipped) == ("ticks", "EURUSD", 0)
    assert [u.key for u in plan.units] == [
        o.key.decode() for o in fetch_units(await p.process([Rec(request())])) if o.key
    ]
