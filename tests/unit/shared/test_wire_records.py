"""Small wire formats: headers, raw payload metadata, fetch units and failure records."""

from __future__ import annotations

import json

import pytest
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.failures import Failure
from tickpipe_shared.wire.fetch_units import FetchUnit
from tickpipe_shared.wire.headers import decode_headers, encode_headers
from tickpipe_shared.wire.raw import RawPayloadMeta

T0 = 1_549_238_400_000  # 2019-02-04T00:00:00Z
HOUR = 3_600_000


# --- headers ----------------------------------------------------------------------------------


def test_encode_headers_prefixes_stringifies_and_drops_none() -> None:
    assert encode_headers({"source": "x", "n": 3, "gone": None, "empty": ""}) == [
        ("tp-source", b"x"),
        ("tp-n", b"3"),
        ("tp-empty", b""),
    ]


def test_decode_headers_keeps_tp_only_and_replaces_bad_bytes() -> None:
    got = decode_headers(
        [("tp-a", b"1"), ("other", b"z"), ("tp-b", b"\xffok"), ("tp-c", None)]  # type: ignore[list-item]
    )
    assert got == {"a": "1", "b": "\ufffdok", "c": ""}
    assert decode_headers(None) == {}
    assert decode_headers([]) == {}


def test_headers_round_trip_utf8() -> None:
    values = {"instrument": "EURUSD", "note": "ü€"}
    assert decode_headers(encode_headers(values)) == values


# --- raw payload metadata ---------------------------------------------------------------------


def raw_meta(**kw: object) -> RawPayloadMeta:
    base: dict[str, object] = dict(
        unit=Unit("dukascopy-bi5", "EURUSD", "ticks", T0, T0 + HOUR),
        format="dukascopy-bi5-ticks",
        url="https://example.test/datafeed/EURUSD/2019/01/04/00h_ticks.bi5",
        sha256="cd" * 32,
        fetched_at_ms=T0 + 5,
        price_scale=5,
        request_id="req-7",
    )
    base.update(kw)
    return RawPayloadMeta(**base)  # type: ignore[arg-type]


def test_raw_headers_round_trip() -> None:
    meta = raw_meta(http_status=203, content_type="application/octet-stream", attempts=3)
    headers = meta.to_headers()
    assert all(k.startswith("tp-") and isinstance(v, bytes) for k, v in headers)
    assert dict(headers)["tp-unit_start_ms"] == str(T0).encode()
    assert dict(headers)["tp-attempts"] == b"3"
    back = RawPayloadMeta.from_headers(headers)
    assert back == meta
    assert isinstance(back.unit.start_ms, int) and isinstance(back.price_scale, int)
    assert back.unit == Unit("dukascopy-bi5", "EURUSD", "ticks", T0, T0 + HOUR)


def test_raw_headers_defaults_when_optional_missing() -> None:
    headers = [(k, v) for k, v in raw_meta().to_headers() if k not in ("tp-attempts", "tp-schema")]
    back = RawPayloadMeta.from_headers(headers)
    assert back.attempts == 1 and back.schema == 1 and back.http_status == 200


def test_raw_headers_ignores_unrelated_headers() -> None:
    headers = [*raw_meta().to_headers(), ("traceparent", b"00-abc"), ("tp-extra", b"x")]
    assert RawPayloadMeta.from_headers(headers) == raw_meta()


@pytest.mark.parametrize("name", ["source", "format", "unit_start_ms", "sha256", "request_id"])
def test_raw_headers_missing(name: str) -> None:
    headers = [(k, v) for k, v in raw_meta().to_headers() if k != f"tp-{name}"]
    with pytest.raises(ValueError, match=f"raw payload header 'tp-{name}' is missing"):
        RawPayloadMeta.from_headers(headers)


def test_raw_headers_none() -> None:
    with pytest.raises(ValueError, match="header 'tp-source' is missing"):
        RawPayloadMeta.from_headers(None)


@pytest.mark.parametrize("name", ["unit_end_ms", "price_scale", "attempts", "http_status"])
def test_raw_headers_not_integer(name: str) -> None:
    headers = [(k, b"12x" if k == f"tp-{name}" else v) for k, v in raw_meta().to_headers()]
    with pytest.raises(
        ValueError, match=f"raw payload header 'tp-{name}' is not an integer: '12x'"
    ):
        RawPayloadMeta.from_headers(headers)


# --- fetch units ------------------------------------------------------------------------------


def test_fetch_unit_round_trip_and_unit() -> None:
    fu = FetchUnit("r", Unit("dukascopy-json", "EURUSD", "ticks", T0, T0 + HOUR), "EUR-USD", 5)
    value = fu.to_json()
    assert json.loads(value) == {
        "request_id": "r",
        "source": "dukascopy-json",
        "instrument": "EURUSD",
        "kind": "ticks",
        "start_ms": T0,
        "end_ms": T0 + HOUR,
        "source_code": "EUR-USD",
        "price_scale": 5,
        "asset_class": "",
        "market_open": None,
        "schema": 1,
    }
    assert b" " not in value  # compact
    assert FetchUnit.from_json(value) == fu
    assert fu.unit.key == "dukascopy-json|EURUSD|ticks|2019-02-04T00:00:00Z"


@pytest.mark.parametrize(
    "value",
    [b"{oops", b"[1]", b'{"request_id": "r"}', b'{"nope": 1}', b"\xff"],
    ids=["bad-json", "list", "missing-fields", "unknown-field", "not-utf8"],
)
def test_fetch_unit_invalid(value: bytes) -> None:
    with pytest.raises(ValueError, match="not a fetch unit record: "):
        FetchUnit.from_json(value)


# --- failures ---------------------------------------------------------------------------------


def test_failure_round_trip() -> None:
    f = Failure(
        stage="decoder",
        reason="lzma: corrupt stream",
        error_class="DecodeError",
        key="k",
        headers={"request_id": "r1"},
        topic="tickpipe.raw-payloads",
        partition=2,
        offset=41,
        attempt=3,
        unit_key="k",
        request_id="r1",
        at_ms=123,
    )
    assert Failure.from_json(f.to_json()) == f


def test_failure_at_ms_defaults_to_now() -> None:
    import time

    before = int(time.time() * 1000)
    f = Failure("fetcher", "x", "E")
    assert before <= f.at_ms <= int(time.time() * 1000)


def test_failure_scrubs_secrets_in_reason_and_headers() -> None:
    f = Failure(
        stage="writer",
        reason="cannot reach postgresql://tick:s3cr3t@db:5432/ticks via "
        "https://api.test/v1?apiKey=ABCDEF&x=1",
        error_class="OSError",
        headers={"url": "https://h.test/p?token=T0K3N"},
    )
    value = f.to_json()
    assert b"s3cr3t" not in value and b"ABCDEF" not in value and b"T0K3N" not in value
    back = Failure.from_json(value)
    assert back.reason == (
        "cannot reach postgresql://tick:***@db:5432/ticks via https://api.test/v1?apiKey=***&x=1"
    )
    assert back.headers == {"url": "https://h.test/p?token=***"}


@pytest.mark.parametrize(
    "value", [b"{", b"[]", b'{"stage": "x"}', b'{"stage":"x","reason":"r","error_class":"E","z":1}']
)
def test_failure_invalid(value: bytes) -> None:
    with pytest.raises(ValueError, match="not a failure record: "):
        Failure.from_json(value)
