"""``tickpipe_shared.wire.requests``: parsing and validating fetch requests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from tickpipe_shared.wire.requests import MAX_SPAN, FetchRequest, RequestError, parse_request


def req(**overrides: Any) -> bytes:
    data: dict[str, Any] = {
        "schema": 1,
        "request_id": "r-1",
        "source": "dukascopy-json",
        "instrument": "EURUSD",
        "kind": "ticks",
        "from": "2019-02-04T00:00:00Z",
        "to": "2019-02-06T00:00:00Z",
    }
    for k, v in overrides.items():
        if v is ...:
            data.pop(k, None)
        else:
            data[k] = v
    return json.dumps(data).encode()


def error_of(value: bytes | None) -> str:
    with pytest.raises(RequestError) as info:
        parse_request(value)
    return str(info.value)


def test_valid_request() -> None:
    r = parse_request(req())
    assert r.request_id == "r-1"
    assert r.source == "dukascopy-json"
    assert r.instrument == "EURUSD"
    assert r.kind == "ticks"
    assert r.from_ == datetime(2019, 2, 4, tzinfo=UTC)
    assert r.to == datetime(2019, 2, 6, tzinfo=UTC)
    assert r.from_.tzinfo is UTC and r.to.tzinfo is UTC


def test_defaults_fill_optional_fields() -> None:
    r = parse_request(req(schema=..., request_id=..., source=..., kind=...))
    assert r.source == "dukascopy-json"
    assert r.kind == "ticks"
    assert r.schema_version == 1
    assert len(r.request_id) == 32 and int(r.request_id, 16) >= 0
    assert abs((datetime.now(UTC) - r.requested_at).total_seconds()) < 60
    other = parse_request(req(request_id=...))
    assert other.request_id != r.request_id


def test_bi5_source_accepted() -> None:
    assert parse_request(req(source="dukascopy-bi5")).source == "dukascopy-bi5"


def test_naive_datetimes_are_utc_and_offsets_converted() -> None:
    r = parse_request(req(**{"from": "2019-02-04T10:00:00", "to": "2019-02-04T14:00:00+02:00"}))
    assert r.from_ == datetime(2019, 2, 4, 10, tzinfo=UTC)
    assert r.from_.utcoffset() == timedelta(0)
    assert r.to == datetime(2019, 2, 4, 12, tzinfo=UTC)
    assert r.to.utcoffset() == timedelta(0)


def test_to_json_round_trips_with_aliases() -> None:
    r = parse_request(req())
    data = json.loads(r.to_json())
    assert data["from"].startswith("2019-02-04T00:00:00")
    assert data["schema"] == 1
    assert "from_" not in data and "schema_version" not in data
    assert parse_request(r.to_json()) == r


@pytest.mark.parametrize("value", [None, b""])
def test_empty(value: bytes | None) -> None:
    assert error_of(value) == "empty fetch request"


def test_bad_json() -> None:
    assert error_of(b"{instrument: EURUSD").startswith("fetch request is not valid JSON: ")


def test_not_utf8() -> None:
    assert "not valid JSON" in error_of(b"\xff\xfe{}")


@pytest.mark.parametrize(("value", "kind"), [(b"[1, 2]", "list"), (b'"x"', "str"), (b"3", "int")])
def test_not_an_object(value: bytes, kind: str) -> None:
    assert error_of(value) == f"fetch request must be a JSON object, got {kind}"


def test_missing_instrument() -> None:
    assert error_of(req(instrument=...)) == "invalid fetch request: instrument: Field required"


def test_missing_from_names_the_alias() -> None:
    assert error_of(req(**{"from": ...})) == "invalid fetch request: from: Field required"


def test_unknown_source() -> None:
    msg = error_of(req(source="bloomberg"))
    assert msg.startswith("invalid fetch request: source: ")
    assert all(s in msg for s in ("dukascopy-json", "dukascopy-bi5", "deriv", "polygon"))


def test_unknown_kind() -> None:
    msg = error_of(req(kind="quotes"))
    assert msg.startswith("invalid fetch request: kind: ")
    assert "'ticks'" in msg and "'candles'" in msg


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"kind": "candles"}, "timeframe: a candle request needs a timeframe"),
        ({"kind": "candles", "timeframe": "5m"}, "does not serve 5m candles (serves 1m, 1h, 1d)"),
        ({"kind": "candles", "timeframe": "1m", "side": "trade"}, "serves bid, ask candles"),
        ({"kind": "candles", "timeframe": "1 minute"}, "is not <count><unit>"),
        ({"timeframe": "1m"}, "only candle requests take a timeframe"),
        ({"source": "polygon"}, "source 'polygon' serves candles, not 'ticks'"),
        ({"source": "deriv", "kind": "candles", "timeframe": "7m"}, "does not serve 7m"),
    ],
)
def test_kind_timeframe_side_checked_per_source(fields: dict[str, Any], expected: str) -> None:
    msg = error_of(req(**fields))
    assert msg.startswith("invalid fetch request: request: ")
    assert expected in msg


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({}, "ticks"),
        ({"kind": "candles", "timeframe": "60s"}, "candles:1m:bid"),
        ({"kind": "candles", "timeframe": "1h", "side": "ask"}, "candles:1h:ask"),
        ({"source": "deriv", "kind": "candles", "timeframe": "300s"}, "candles:5m:mid"),
        ({"source": "deriv", "instrument": "R_50"}, "ticks"),
        (
            {"source": "polygon", "instrument": "C:EURUSD", "kind": "candles", "timeframe": "1w"},
            "candles:1w:trade",
        ),
    ],
)
def test_unit_kind(fields: dict[str, Any], kind: str) -> None:
    assert str(parse_request(req(**fields)).unit_kind) == kind


def test_several_problems_are_all_reported() -> None:
    msg = error_of(req(source="x", kind="y"))
    assert "source: " in msg and "; kind: " in msg


def test_bad_instrument_spelling() -> None:
    assert error_of(req(instrument="EUR USD")).startswith("invalid fetch request: instrument: ")
    assert "instrument: " in error_of(req(instrument=""))
    assert "instrument: " in error_of(req(instrument="X" * 65))


def test_bad_datetime() -> None:
    assert error_of(req(**{"from": "yesterday"})).startswith("invalid fetch request: from: ")


@pytest.mark.parametrize("to", ["2019-02-04T00:00:00Z", "2019-02-03T00:00:00Z"])
def test_from_not_before_to(to: str) -> None:
    msg = error_of(req(to=to))
    assert "'from' (2019-02-04T00:00:00+00:00) must be before 'to'" in msg


def test_pre_1970() -> None:
    msg = error_of(req(**{"from": "1969-12-31T23:00:00Z", "to": "1970-01-02T00:00:00Z"}))
    assert "'from' (1969-12-31T23:00:00+00:00) is before 1970" in msg


def test_epoch_itself_is_allowed() -> None:
    r = parse_request(req(**{"from": "1970-01-01T00:00:00Z", "to": "1970-01-01T01:00:00Z"}))
    assert r.from_.timestamp() == 0


def test_longer_than_30_years() -> None:
    start = datetime(1980, 1, 1, tzinfo=UTC)
    msg = error_of(
        req(**{"from": start.isoformat(), "to": (start + MAX_SPAN + timedelta(days=1)).isoformat()})
    )
    assert f"range of {MAX_SPAN.days + 1} days exceeds 30 years" in msg
    ok = parse_request(req(**{"from": start.isoformat(), "to": (start + MAX_SPAN).isoformat()}))
    assert ok.to - ok.from_ == MAX_SPAN


def test_future() -> None:
    start = datetime.now(UTC) + timedelta(days=3)
    msg = error_of(
        req(**{"from": start.isoformat(), "to": (start + timedelta(hours=1)).isoformat()})
    )
    assert "'from' (" in msg and "is in the future" in msg


def test_now_is_not_future() -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    r = parse_request(
        req(**{"from": start.isoformat(), "to": (start + timedelta(hours=1)).isoformat()})
    )
    assert r.from_ == start


def test_extra_field() -> None:
    assert (
        error_of(req(priority=5))
        == "invalid fetch request: priority: Extra inputs are not permitted"
    )


def test_wrong_schema_version() -> None:
    assert error_of(req(schema=2)).startswith("invalid fetch request: schema: ")


def test_model_is_frozen() -> None:
    r = parse_request(req())
    with pytest.raises(ValueError):
        r.instrument = "GBPUSD"  # type: ignore[misc]


def test_direct_construction_with_alias_and_other_timezone() -> None:
    tz = timezone(timedelta(hours=-5))
    r = FetchRequest.model_validate(
        {"instrument": "EURUSD", "from": datetime(2019, 2, 4, tzinfo=tz), "to": "2019-02-05"}
    )
    assert r.from_ == datetime(2019, 2, 4, 5, tzinfo=UTC)
    assert r.to == datetime(2019, 2, 5, tzinfo=UTC)
