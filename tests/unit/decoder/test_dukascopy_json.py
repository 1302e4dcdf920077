"""JSON API decoder: every recorded response against its golden CSV, plus self-made cases.

Source of truth: ``../shared/docs/dukascopy.md §3`` and ``../shared/data/dukascopy/golden``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.shared_data import GoldenCsv, format_points, locate_shared_dir
from tickpipe_decoder.errors import DecodeError
from tickpipe_decoder.formats import dukascopy_json
from tickpipe_decoder.formats.dukascopy_json import (
    decode_json_candles,
    decode_json_ticks,
    scale_from_multiplier,
)


def assert_column(name: str, got: Sequence[Any], want: Sequence[Any]) -> None:
    assert len(got) == len(want), f"{name}: {len(got)} rows, golden has {len(want)}"
    bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    assert not bad, (
        f"{name}: {len(bad)} mismatches, first at row {bad[0]}: {got[bad[0]]!r} != {want[bad[0]]!r}"
    )


# --- every recorded response vs its golden ------------------------------------------------


def test_json_ticks_match_golden(
    json_tick_file: str,
    dukascopy_dir: Path,
    golden: Callable[[str], GoldenCsv],
    golden_index: dict[str, dict[str, str]],
) -> None:
    body = (dukascopy_dir / json_tick_file).read_bytes()
    ticks, scale = decode_json_ticks(body)
    assert scale == int(golden_index[json_tick_file]["scale"])
    g = golden(json_tick_file)
    assert g.header == ["timestamp_ms", "ask", "bid", "ask_volume", "bid_volume"]
    assert len(ticks) == int(golden_index[json_tick_file]["rows"])
    assert_column("timestamp_ms", [str(t) for t in ticks.ts_ms.tolist()], g.column("timestamp_ms"))
    assert_column("ask", [format_points(p, scale) for p in ticks.ask.tolist()], g.column("ask"))
    assert_column("bid", [format_points(p, scale) for p in ticks.bid.tolist()], g.column("bid"))
    # Volumes: float64 equality with the golden's exact decimal (units / 10^6).
    assert_column(
        "ask_volume", ticks.ask_volume.tolist(), [float(v) for v in g.column("ask_volume")]
    )
    assert_column(
        "bid_volume", ticks.bid_volume.tolist(), [float(v) for v in g.column("bid_volume")]
    )
    # ... and the golden is indeed the exact decimal of the response text / 10^6.
    raw = json.loads(body, parse_float=Decimal)
    want = [float(Decimal(v) / 10**6) for v in raw["askVolumes"]]
    assert ticks.ask_volume.tolist() == want


def test_json_candles_match_golden(
    json_candle_file: str,
    dukascopy_dir: Path,
    golden: Callable[[str], GoldenCsv],
    golden_index: dict[str, dict[str, str]],
) -> None:
    candles, scale = decode_json_candles((dukascopy_dir / json_candle_file).read_bytes())
    assert scale == int(golden_index[json_candle_file]["scale"])
    g = golden(json_candle_file)
    assert g.header == ["timestamp_ms", "open", "high", "low", "close", "volume"]
    assert len(candles) == int(golden_index[json_candle_file]["rows"])
    assert_column(
        "timestamp_ms", [str(t) for t in candles.ts_ms.tolist()], g.column("timestamp_ms")
    )
    for col in ("open", "high", "low", "close"):
        points = getattr(candles, col).tolist()
        assert_column(col, [format_points(p, scale) for p in points], g.column(col))
    assert_column("volume", candles.volume.tolist(), [float(v) for v in g.column("volume")])


def test_json_candles_are_sparse(dukascopy_dir: Path, golden: Callable[[str], GoldenCsv]) -> None:
    """No flat filling: the filled golden has the 2 skipped minutes, the decoder does not."""
    rel = "json/candles/minute/EUR-USD/BID/2026/7/10.json"
    candles, _ = decode_json_candles((dukascopy_dir / rel).read_bytes())
    filled = golden(rel + ".filled")
    assert len(filled.rows) == len(candles) + 2
    assert set(candles.ts_ms.tolist()) < {int(t) for t in filled.column("timestamp_ms")}


def test_every_json_file_is_covered(
    dukascopy_dir: Path, golden_index: dict[str, dict[str, str]]
) -> None:
    files = sorted(
        p.relative_to(dukascopy_dir).as_posix()
        for p in dukascopy_dir.glob("json/**/*.json")
        if "/instruments/" not in p.as_posix()
    )
    assert files == sorted(k for k in golden_index if k.startswith("json/"))


def test_real_empty_bucket(dukascopy_dir: Path) -> None:
    body = (dukascopy_dir / "json/candles/minute/EUR-USD/BID/2026/7/11.json").read_bytes()
    assert len(body) == 177
    candles, scale = decode_json_candles(body)
    assert len(candles) == 0 and scale == 5


# --- self-made responses (no ../shared needed) --------------------------------------------

T0 = 1783944000000


def tick_body(**override: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "timestamp": T0,
        "multiplier": 1.0e-5,
        "ask": 1.14277,
        "bid": 1.14273,
        "times": [93, 104, 0],
        "asks": [0, -2, 3],
        "bids": [0, -2, 1],
        "askVolumes": [1800000.0, 900000.0, 0.17],
        "bidVolumes": [2700000.0, 14490000.0, 3],
    }
    body.update(override)
    return body


def candle_body(**override: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "timestamp": 1783641600000,
        "multiplier": 1.0e-5,
        "open": 1.14331,
        "high": 1.14334,
        "low": 1.14322,
        "close": 1.14324,
        "shift": 60000,
        "times": [0, 1, 3],
        "opens": [0, -8, 9],
        "highs": [0, 1, 4],
        "lows": [0, -4, 5],
        "closes": [0, 9, -2],
        "volumes": [197.1, 104.85, 0.000001],
    }
    body.update(override)
    return body


def enc(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def test_self_made_ticks() -> None:
    ticks, scale = decode_json_ticks(enc(tick_body()))
    assert scale == 5
    assert ticks.ts_ms.tolist() == [T0 + 93, T0 + 197, T0 + 197]
    assert ticks.ask.tolist() == [114277, 114275, 114278]
    assert ticks.bid.tolist() == [114273, 114271, 114272]
    assert ticks.ask_volume.tolist() == [1.8, 0.9, 0.00000017]
    assert ticks.bid_volume.tolist() == [2.7, 14.49, 0.000003]
    assert 0.17 / 1e6 != 0.00000017  # the naive division would be off by one ulp


def test_self_made_candles() -> None:
    candles, scale = decode_json_candles(enc(candle_body()))
    assert scale == 5
    t = 1783641600000
    assert candles.ts_ms.tolist() == [t, t + 60000, t + 4 * 60000]
    assert candles.open.tolist() == [114331, 114323, 114332]
    assert candles.high.tolist() == [114334, 114335, 114339]
    assert candles.low.tolist() == [114322, 114318, 114323]
    assert candles.close.tolist() == [114324, 114333, 114331]
    assert candles.volume.tolist() == [197.1, 104.85, 0.000001]


def test_empty_bucket() -> None:
    empty = {"ask": None, "bid": None, "times": [], "asks": [], "bids": []}
    ticks, scale = decode_json_ticks(enc(tick_body(**empty, askVolumes=[], bidVolumes=[])))
    assert len(ticks) == 0 and scale == 5 and ticks.ts_ms.dtype == np.int64
    empty_c = {k: [] for k in ("times", "opens", "highs", "lows", "closes", "volumes")}
    nulls = dict.fromkeys(("open", "high", "low", "close"))
    candles, scale = decode_json_candles(enc(candle_body(**empty_c, **nulls, multiplier=0.1)))
    assert len(candles) == 0 and scale == 1


@pytest.mark.parametrize(
    ("multiplier", "scale"),
    [(1.0e-5, 5), (0.001, 3), (0.1, 1), (1, 0), (10, -1), (1e-9, 9), (100.0, -2)],
)
def test_scale_from_multiplier(multiplier: float, scale: int) -> None:
    assert scale_from_multiplier(multiplier) == scale
    _, got = decode_json_ticks(enc(tick_body(multiplier=multiplier, ask=2.0, bid=1.0)))
    assert got == scale


def test_base_prices_in_points_for_negative_scale() -> None:
    ticks, scale = decode_json_ticks(enc(tick_body(multiplier=10, ask=12340, bid=12330.0)))
    assert scale == -1
    assert ticks.ask.tolist()[0] == 1234 and ticks.bid.tolist()[0] == 1233


BAD_TICKS: list[tuple[bytes, str]] = [
    (b"", "json ticks: empty body (0 bytes) is not a JSON response"),
    (b"<html>503</html>", "json ticks: truncated or invalid JSON at char 0: Expecting value"),
    (enc(tick_body())[:-5], "json ticks: truncated or invalid JSON at char "),
    (b"\xff\xfe\x00garbage", "json ticks: "),
    (b"[1, 2]", "json ticks: top-level JSON value is a list, expected an object"),
    (enc(tick_body(bids=[0, 1])), "json ticks: column 'bids' has 2 values, 'times' has 3"),
    (
        enc(tick_body(askVolumes=[1.0])),
        "json ticks: column 'askVolumes' has 1 values, 'times' has 3",
    ),
    (
        enc(tick_body(times=[5, -1, 2])),
        "json ticks: column 'times' value -1 at index 1 is negative",
    ),
    (
        enc(tick_body(times=[5, 1.5, 2])),
        "json ticks: column 'times' value 1.5 at index 1 is not an integer",
    ),
    (
        enc(tick_body(asks=[0, 0.5, 0])),
        "json ticks: column 'asks' value 0.5 at index 1 is not an integer",
    ),
    (
        json.dumps(tick_body(bidVolumes=[1.0, float("nan"), 2.0])).encode(),
        "json ticks: column 'bidVolumes' value nan at index 1 is not finite",
    ),
    (
        json.dumps(tick_body(asks=[0, float("inf"), 2.0])).encode(),
        "json ticks: column 'asks' value inf at index 1 is not finite",
    ),
    (
        enc(tick_body(bids=[0, None, 1])),
        "json ticks: column 'bids' has null at index 1, expected a number",
    ),
    (
        enc(tick_body(bids=[0, "1", 1])),
        "json ticks: column 'bids' has str at index 1, expected a number",
    ),
    (
        enc(tick_body(bids=[0, [1], 1])),
        "json ticks: column 'bids' has an array at index 1, expected a number",
    ),
    (
        enc(tick_body(bids=[0, 10**30, 1])),
        "json ticks: column 'bids' has an integer beyond int64 at index 1",
    ),
    (
        enc(tick_body(bids=[0, 2**40, 1])),
        "json ticks: column 'bids' value 1099511627776 at index 1 exceeds",
    ),
    (enc(tick_body(times=[1, True, 1])), "json ticks: column 'times' has bool at index 1"),
    (enc(tick_body(times=[True, True, True])), "json ticks: column 'times' has bool at index 0"),
    (enc(tick_body(bids="0,1,2")), "json ticks: column 'bids' is str, expected an array"),
    (
        enc(tick_body(multiplier=0)),
        "json ticks: field 'multiplier' is 0.0, expected a positive number",
    ),
    (
        enc(tick_body(multiplier=-1e-5)),
        "json ticks: field 'multiplier' is -1e-05, expected a positive number",
    ),
    (
        enc(tick_body(multiplier=2e-5)),
        "json ticks: field 'multiplier' is 2e-05, not a power of ten",
    ),
    (
        enc(tick_body(multiplier=1e-30)),
        "json ticks: field 'multiplier' is 1e-30, scale 30 is outside",
    ),
    (enc(tick_body(multiplier="1e-5")), "json ticks: field 'multiplier' is str, expected a number"),
    (enc(tick_body(multiplier=None)), "json ticks: field 'multiplier' is null, expected a number"),
    (enc(tick_body(ask=None)), "json ticks: base price 'ask' is null but 'times' has 3 values"),
    (enc(tick_body(bid=float("nan"))), "json ticks: field 'bid' is nan, not finite"),
    (enc(tick_body(ask=1e300)), "json ticks: field 'ask' is 1e+300, out of range for scale 5"),
    (enc(tick_body(timestamp=1.5)), "json ticks: field 'timestamp' is 1.5, expected an integer"),
    (enc(tick_body(timestamp=True)), "json ticks: field 'timestamp' is bool, expected a number"),
    (
        enc({k: v for k, v in tick_body().items() if k != "times"}),
        "json ticks: missing column 'times'",
    ),
    (
        enc({k: v for k, v in tick_body().items() if k != "timestamp"}),
        "json ticks: missing field 'timestamp'",
    ),
    (b"[" * 100_000, "json ticks: "),
    (
        b'{"timestamp": ' + b"1" * 5000 + b"}",
        "json ticks: JSON value not readable: Exceeds the limit (4300 digits)",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_TICKS, ids=[m[:60] for _, m in BAD_TICKS])
def test_bad_tick_responses(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_json_ticks(body)
    assert str(info.value).startswith(message), str(info.value)


def test_truncated_message_names_the_char() -> None:
    with pytest.raises(DecodeError, match=r"^json ticks: truncated or invalid JSON at char 1234: "):
        decode_json_ticks(enc(tick_body(times=list(range(1000))))[:1234])


BAD_CANDLES: list[tuple[bytes, str]] = [
    (
        enc(candle_body(shift=0)),
        "json candles: field 'shift' is 0, expected a positive number of ms",
    ),
    (enc(candle_body(shift=-60000)), "json candles: field 'shift' is -60000, expected a positive"),
    (enc(candle_body(shift=1.5)), "json candles: field 'shift' is 1.5, expected an integer"),
    (
        enc({k: v for k, v in candle_body().items() if k != "shift"}),
        "json candles: missing field 'shift'",
    ),
    (
        enc(candle_body(times=[0, 1.5, 1])),
        "json candles: column 'times' value 1.5 at index 1 is not an integer",
    ),
    (
        enc(candle_body(times=[0, -1, 1])),
        "json candles: column 'times' value -1 at index 1 is negative",
    ),
    (enc(candle_body(lows=[0, 1])), "json candles: column 'lows' has 2 values, 'times' has 3"),
    (
        enc(candle_body(close=None)),
        "json candles: base price 'close' is null but 'times' has 3 values",
    ),
    (
        enc(candle_body(multiplier=0)),
        "json candles: field 'multiplier' is 0.0, expected a positive number",
    ),
    (
        enc(candle_body(times=[2**32] * 3, shift=2**31)),
        "json candles: candle offsets reach 12884901888 × 2147483648 ms, beyond the range of ms",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_CANDLES, ids=[m[:60] for _, m in BAD_CANDLES])
def test_bad_candle_responses(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_json_candles(body)
    assert str(info.value).startswith(message), str(info.value)


def test_row_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dukascopy_json, "MAX_ROWS", 2)
    with pytest.raises(DecodeError, match=r"^json ticks: column 'times' has 3 values, limit is 2$"):
        decode_json_ticks(enc(tick_body()))


# --- fuzz: only DecodeError may escape ---------------------------------------------------


def _decode_all(body: bytes) -> None:
    for decode in (decode_json_ticks, decode_json_candles):
        try:
            decode(body)  # type: ignore[operator]
        except DecodeError:
            pass


@pytest.fixture(scope="module")
def seed_bodies() -> list[bytes]:
    bodies = [enc(tick_body()), enc(candle_body())]
    root = locate_shared_dir()
    if root is not None:
        base = root / "data" / "dukascopy" / "json"
        bodies.append((base / "candles/minute/EUR-USD/BID/2026/7/11.json").read_bytes())
        bodies.append((base / "ticks/EUR-USD/2026/7/13/12.json").read_bytes()[:4000])
    return bodies


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(body: bytes) -> None:
    _decode_all(body)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzz_mutated_text(seed_bodies: list[bytes], data: st.DataObject) -> None:
    body = bytearray(data.draw(st.sampled_from(seed_bodies), label="seed"))
    for _ in range(data.draw(st.integers(0, 6), label="edits")):
        pos = data.draw(st.integers(0, len(body) - 1))
        body[pos] = data.draw(st.sampled_from(b'0123456789-.,:[]{}"enulltrueE+ \xff'))
    _decode_all(bytes(body[: data.draw(st.integers(0, len(body)), label="cut")]))
    _decode_all(bytes(body))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=100, deadline=None)
@given(
    base=st.sampled_from(["ticks", "candles"]),
    replacements=st.dictionaries(
        st.sampled_from(sorted(set(tick_body()) | set(candle_body()))),
        json_values | st.lists(st.integers(-(2**40), 2**40) | st.floats(), max_size=4),
        max_size=3,
    ),
)
def test_fuzz_field_values(base: str, replacements: dict[str, Any]) -> None:
    obj = tick_body() if base == "ticks" else candle_body()
    obj.update(replacements)
    _decode_all(json.dumps(obj).encode())
