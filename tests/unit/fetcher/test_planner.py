"""``tickpipe_fetcher.planner``: requests → fetch units, bad requests → failure records."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from tickpipe_fetcher.planner import Planner
from tickpipe_shared.config import Settings
from tickpipe_shared.instruments import InstrumentRegistry, UnknownInstrumentError
from tickpipe_shared.instruments.loader import RegistryUnavailableError
from tickpipe_shared.kafka.records import OutRecord, RetryableError
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


def planner(
    loader: Loader | None = None, sources: set[str] | None = None
) -> tuple[Planner, Loader]:
    loader = loader or Loader()
    p = Planner(
        Settings(),
        loader,
        {"dukascopy-json", "dukascopy-bi5"} if sources is None else sources,
        failure,
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
        source="dukascopy-json",
        instrument="EURUSD",
        kind="ticks",
        start_ms=T0,
        end_ms=T0 + HOUR,
        source_code="EUR-USD",
        price_scale=5,
    )
    assert [u.start_ms for u in units] == [T0, T0 + HOUR, T0 + 2 * HOUR]
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
    assert {u.instrument for u in units} == {"USA500IDXUSD"}
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
