"""Deriv ``ticks_history`` decoder: every recorded reply, checked against an independent
string-only parse, plus self-made pages (merge, de-duplication, scale, errors, fuzz).

Source of truth: ``../shared/docs/deriv.md §3–§5`` and ``../shared/data/deriv``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.shared_data import locate_shared_dir
from tickpipe_decoder.errors import DecodeError
from tickpipe_decoder.formats import pages as pages_module
from tickpipe_decoder.formats.deriv import decode_deriv_candles, decode_deriv_ticks

ALL_TIME = (0, 2**50)


def wrap(*pages: Any) -> bytes:
    """A ``deriv-ticks-history`` payload: the pages' JSON texts in an array, as the fetcher
    joins them (``str`` pages are used verbatim)."""
    texts = [p if isinstance(p, str) else json.dumps(p) for p in pages]
    return ("[" + ",".join(texts) + "]").encode()


# --- an independent reading of the captures: text only, no Decimal, no float -------------


def texts_of(value: Any) -> str:
    """The text of a JSON number or numeric string (floats were parsed as their text)."""
    assert isinstance(value, str | int) and not isinstance(value, bool), value
    return str(value)


def points_of(text: str, scale: int) -> int:
    whole, _, frac = text.partition(".")
    assert len(frac) <= scale
    return int(whole + frac.ljust(scale, "0"))


def decimals_of(text: str) -> int:
    return len(text.partition(".")[2])


@pytest.fixture(scope="module")
def deriv_dir() -> Path:
    root = locate_shared_dir()
    if root is None or not (root / "data" / "deriv").is_dir():
        pytest.skip("../shared/data/deriv not found beside the repo (set TICKPIPE_SHARED_DIR)")
    return root / "data" / "deriv"


def captures(deriv_dir: Path, msg_type: str) -> list[Path]:
    return [
        p
        for p in sorted(deriv_dir.glob("*.json"))
        if json.loads(p.read_bytes()).get("msg_type") == msg_type
    ]


def test_every_capture_is_covered(deriv_dir: Path) -> None:
    kinds = {p.name: json.loads(p.read_bytes()) for p in deriv_dir.glob("*.json")}
    by_type = sorted((v["msg_type"], "error" in v) for v in kinds.values())
    assert by_type == [
        ("candles", False),
        ("candles", False),
        ("candles", False),
        ("history", False),
        ("history", False),
        ("ping", False),
        ("ticks_history", True),
    ]


def test_tick_captures_match_an_independent_parse(deriv_dir: Path) -> None:
    kinds_seen: set[str] = set()
    files = captures(deriv_dir, "history")
    assert files
    for path in files:
        text = path.read_text()
        raw = json.loads(text, parse_float=str)
        prices = [texts_of(v) for v in raw["history"]["prices"]]
        times = [int(texts_of(v)) for v in raw["history"]["times"]]
        kinds_seen |= {type(v).__name__ for v in json.loads(text)["history"]["prices"]}
        scale = max(decimals_of(t) for t in prices)
        ticks, got_scale = decode_deriv_ticks(wrap(text), *ALL_TIME)
        assert got_scale == scale == 4, path.name
        assert ticks.ts_ms.tolist() == [t * 1000 for t in times]
        assert ticks.bid.tolist() == [points_of(t, scale) for t in prices]
        assert ticks.ask.tolist() == ticks.bid.tolist()  # one quoted price: spread 0
        assert np.isnan(ticks.bid_volume).all() and np.isnan(ticks.ask_volume).all()
    assert kinds_seen == {"str", "float"}  # 2018 string-typed and numeric replies


def test_string_and_numeric_captures_are_both_present(deriv_dir: Path) -> None:
    types: set[str] = set()
    for path in captures(deriv_dir, "history") + captures(deriv_dir, "candles"):
        raw = json.loads(path.read_text())
        values = raw["history"]["prices"] if "history" in raw else raw["candles"][0].values()
        types |= {type(v).__name__ for v in values}
    assert {"str", "float"} <= types


def test_candle_captures_match_an_independent_parse(deriv_dir: Path) -> None:
    files = captures(deriv_dir, "candles")
    assert len(files) == 3
    for path in files:
        text = path.read_text()
        raw = json.loads(text, parse_float=str)
        rows = raw["candles"]
        prices = [texts_of(c[k]) for c in rows for k in ("open", "high", "low", "close")]
        scale = max(decimals_of(t) for t in prices)
        candles, got_scale = decode_deriv_candles(wrap(text), *ALL_TIME)
        assert got_scale == scale, path.name
        assert candles.ts_ms.tolist() == [int(texts_of(c["epoch"])) * 1000 for c in rows]
        for name in ("open", "high", "low", "close"):
            want = [points_of(texts_of(c[name]), scale) for c in rows]
            assert getattr(candles, name).tolist() == want, (path.name, name)
        assert np.isnan(candles.volume).all()


def test_trailing_zeros_in_strings_count_as_decimals(deriv_dir: Path) -> None:
    """R_25's prices are strings with 3 decimals such as "3481.830": scale 3, not 2."""
    path = (
        deriv_dir / "ticks_history_R_25_candles60_subscribe_1532591280_1532592960_stringtyped.json"
    )
    candles, scale = decode_deriv_candles(wrap(path.read_text()), *ALL_TIME)
    assert scale == 3
    assert candles.open.tolist()[1] == 3481830


def test_error_capture_names_the_code(deriv_dir: Path) -> None:
    body = wrap(
        (deriv_dir / "error_InputValidationFailed_granularity_string_frxUSDJPY.json").read_text()
    )
    for decode in (decode_deriv_ticks, decode_deriv_candles):
        with pytest.raises(
            DecodeError, match=r"page 0 is an error reply, code 'InputValidationFailed'"
        ):
            decode(body, *ALL_TIME)


def test_ping_capture_is_not_a_history_reply(deriv_dir: Path) -> None:
    body = wrap((deriv_dir / "ping_pong.json").read_text())
    with pytest.raises(
        DecodeError, match=r"^deriv ticks-history: page 0 has unknown msg_type 'ping'"
    ):
        decode_deriv_ticks(body, *ALL_TIME)


# --- self-made pages -----------------------------------------------------------------------

T = 1_700_000_000  # epoch seconds


def history(times: list[Any], prices: list[Any], **extra: Any) -> dict[str, Any]:
    return {"msg_type": "history", "history": {"times": times, "prices": prices}, **extra}


def candle_page(*rows: tuple[Any, Any, Any, Any, Any], **extra: Any) -> dict[str, Any]:
    keys = ("epoch", "open", "high", "low", "close")
    return {
        "msg_type": "candles",
        "candles": [dict(zip(keys, r, strict=True)) for r in rows],
        **extra,
    }


def test_pages_merge_sorted_deduplicated_and_clipped() -> None:
    newest = history([T + 4, T + 6, T + 8], [10.25, 10.5, 10.75])
    # Older page, overlapping at T + 4 with a different price: the first page fetched wins.
    older = history([T, T + 2, T + 4], ["10.0", "10.1", "99.9"])
    ticks, scale = decode_deriv_ticks(wrap(newest, older), (T + 2) * 1000, (T + 8) * 1000)
    assert scale == 2
    assert ticks.ts_ms.tolist() == [(T + 2) * 1000, (T + 4) * 1000, (T + 6) * 1000]
    assert ticks.bid.tolist() == [1010, 1025, 1050]


def test_candle_pages_merge() -> None:
    p1 = candle_page((T + 120, 1.5, 2, 1, "1.75"), (T + 180, 2, 2, 2, 2))
    p2 = candle_page((T + 60, 1, 1.5, 1, 1.5), (T + 120, 9, 9, 9, 9))
    candles, scale = decode_deriv_candles(wrap(p2, p1), *ALL_TIME)
    assert scale == 2
    assert candles.ts_ms.tolist() == [(T + 60) * 1000, (T + 120) * 1000, (T + 180) * 1000]
    assert candles.open.tolist() == [100, 900, 200]  # p2 came first: its T+120 candle wins
    assert candles.close.tolist() == [150, 900, 200]


def test_pip_size_sets_the_scale() -> None:
    ticks, scale = decode_deriv_ticks(wrap(history([T], [272.1], pip_size=4)), *ALL_TIME)
    assert scale == 4 and ticks.bid.tolist() == [2721000]
    # A price with more decimals than pip_size raises the scale rather than losing digits.
    ticks, scale = decode_deriv_ticks(wrap(history([T], ["1.23456"], pip_size=2)), *ALL_TIME)
    assert scale == 5 and ticks.bid.tolist() == [123456]
    # pip_size alone gives the scale of an empty page.
    ticks, scale = decode_deriv_ticks(wrap(history([], [], pip_size="3")), *ALL_TIME)
    assert len(ticks) == 0 and scale == 3


def test_empty_payloads() -> None:
    ticks, scale = decode_deriv_ticks(b"[]", *ALL_TIME)
    assert len(ticks) == 0 and scale is None
    candles, scale = decode_deriv_candles(wrap(candle_page()), *ALL_TIME)
    assert len(candles) == 0 and scale is None
    assert candles.ts_ms.dtype == np.int64


def test_numbers_are_exact_without_float_noise() -> None:
    # 0.1 + 0.2 style values: float arithmetic would give 30000000000000004 noise.
    ticks, scale = decode_deriv_ticks(
        wrap(history([T, T + 1, T + 2], ["0.3", 1.005, "1e2"])), *ALL_TIME
    )
    assert scale == 3
    assert ticks.bid.tolist() == [300, 1005, 100000]


def test_integral_float_and_string_times() -> None:
    ticks, _ = decode_deriv_ticks(
        wrap(history([T, str(T + 1), float(T + 2)], [1, 2, 3])), *ALL_TIME
    )
    assert ticks.ts_ms.tolist() == [T * 1000, (T + 1) * 1000, (T + 2) * 1000]


BAD: list[tuple[bytes, str]] = [
    (b"", "deriv ticks-history: empty body (0 bytes) is not a JSON array of pages"),
    (b"[{", "deriv ticks-history: truncated or invalid JSON at char 2"),
    (b"\xff\xfe[]", "deriv ticks-history: "),
    (
        json.dumps(history([T], [1])).encode(),
        "deriv ticks-history: top-level JSON value is an object, expected an array of page bodies",
    ),
    (
        wrap(history([T], [1]), [1]),
        "deriv ticks-history: page 1 is an array, expected a JSON object",
    ),
    (wrap({"history": {}}), "deriv ticks-history: page 0 has no 'msg_type'"),
    (wrap({"msg_type": "ohlc"}), "deriv ticks-history: page 0 has unknown msg_type 'ohlc'"),
    (
        wrap(candle_page((T, 1, 1, 1, 1))),
        "deriv ticks-history: page 0 is a 'candles' reply, a tick unit needs 'history' replies",
    ),
    (
        wrap({"msg_type": "ticks_history", "error": {"code": "RateLimit", "message": "slow down"}}),
        "deriv ticks-history: page 0 is an error reply, code 'RateLimit': 'slow down'",
    ),
    (
        wrap({"msg_type": "history", "history": None}),
        "deriv ticks-history: page 0 field 'history' is null, expected an object",
    ),
    (
        wrap({"msg_type": "history", "history": {"times": [T]}}),
        "deriv ticks-history: page 0 history has no 'prices'",
    ),
    (
        wrap({"msg_type": "history", "history": {"times": [T], "prices": "1"}}),
        "deriv ticks-history: page 0 history field 'prices' is a string, expected an array",
    ),
    (
        wrap(history([T, T + 1], [1])),
        "deriv ticks-history: page 0 history.prices has 1 values, history.times has 2",
    ),
    (
        wrap(history([T], [1]), history([T, T + 1], [1, True])),
        "deriv ticks-history: page 1 history.prices[1] is a boolean, expected a number",
    ),
    (
        wrap(history([T], [None])),
        "deriv ticks-history: page 0 history.prices[0] is null, expected a number or a numeric",
    ),
    (
        wrap(history([T], ["12,5"])),
        "deriv ticks-history: page 0 history.prices[0] is the string '12,5', not a decimal number",
    ),
    (
        wrap(history([T], ["NaN"])),
        "deriv ticks-history: page 0 history.prices[0] is the string 'NaN', not a decimal number",
    ),
    (
        wrap(history([T], [1])).replace(b"[1]", b"[NaN]"),
        "deriv ticks-history: page 0 history.prices[0] is nan, not a finite number",
    ),
    (
        wrap(history([T], [1])).replace(b"[1]", b"[Infinity]"),
        "deriv ticks-history: page 0 history.prices[0] is inf, not a finite number",
    ),
    (
        wrap(history([T + 0.5], [1])),
        "deriv ticks-history: page 0 history.times[0] is 1700000000.5, not a whole",
    ),
    (
        wrap(history([-1], [1])),
        "deriv ticks-history: page 0 history.times[0] is -1, outside 0..253402300799 epoch seconds",
    ),
    (
        wrap(history(["1e99"], [1])),
        "deriv ticks-history: page 0 history.times[0] is '1e99', outside 0..253402300799 epoch",
    ),
    (
        wrap(history([T], ["1e30"])),
        "deriv ticks-history: page 0 history.prices[0] is 1E+30, out of range for scale 0",
    ),
    (
        wrap(history([T, T + 1], ["1.5", "1.0000000000001"])),
        "deriv ticks-history: page 0 history.prices[1] 1.0000000000001 has 13 decimals, more than "
        "the limit 12",
    ),
    (
        wrap(history([T], [1], pip_size=2.5)),
        "deriv ticks-history: page 0 field 'pip_size' is 2.5, not a whole number",
    ),
    (
        wrap(history([T], [1], pip_size=40)),
        "deriv ticks-history: page 0 field 'pip_size' is 40, outside 0..12 decimals",
    ),
    (b"[" + b"1" * 5000 + b"]", "deriv ticks-history: JSON value not readable: "),
    (b"[" * 100_000, "deriv ticks-history: "),
]


@pytest.mark.parametrize(("body", "message"), BAD, ids=[m[21:80] for _, m in BAD])
def test_bad_tick_payloads(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_deriv_ticks(body, *ALL_TIME)
    assert str(info.value).startswith(message), str(info.value)


BAD_CANDLES: list[tuple[bytes, str]] = [
    (
        wrap(history([T], [1])),
        "deriv ticks-history: page 0 is a 'history' reply, a candle unit needs 'candles' replies",
    ),
    (wrap({"msg_type": "candles"}), "deriv ticks-history: page 0 has no 'candles'"),
    (
        wrap({"msg_type": "candles", "candles": [[T, 1, 1, 1, 1]]}),
        "deriv ticks-history: page 0 candle 0 is an array, expected an object",
    ),
    (
        wrap({"msg_type": "candles", "candles": [{"epoch": T, "open": 1, "high": 1, "low": 1}]}),
        "deriv ticks-history: page 0 candle 0 has no 'close'",
    ),
    (
        wrap(candle_page((T, 1, 1, 1, 1), (T + 60, 1, {"x": 1}, 1, 1))),
        "deriv ticks-history: page 0 candle 1 field 'high' is an object, expected a number",
    ),
    (
        wrap(candle_page((T, 1, 1, 1, 1)), candle_page((True, 1, 1, 1, 1))),
        "deriv ticks-history: page 1 candle 0 field 'epoch' is a boolean",
    ),
    (
        wrap(candle_page((T, 1, 1, 1, 1)), candle_page((T + 60, 1, "1e16", 1, 1))),
        "deriv ticks-history: page 1 candle 0 field 'high' is 1E+16, out of range for scale 0",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_CANDLES, ids=[m[21:80] for _, m in BAD_CANDLES])
def test_bad_candle_payloads(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_deriv_candles(body, *ALL_TIME)
    assert str(info.value).startswith(message), str(info.value)


def test_row_and_page_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pages_module, "MAX_ROWS", 3)
    body = wrap(history([T, T + 1], [1, 2]), history([T + 2, T + 3], [1, 2]))
    with pytest.raises(
        DecodeError, match=r"^deriv ticks-history: 4 rows is more than the limit of 3$"
    ):
        decode_deriv_ticks(body, *ALL_TIME)
    monkeypatch.setattr(pages_module, "MAX_PAGES", 1)
    with pytest.raises(
        DecodeError, match=r"^deriv ticks-history: 2 pages is more than the limit of 1$"
    ):
        decode_deriv_ticks(body, *ALL_TIME)


# --- fuzz: only DecodeError may escape ---------------------------------------------------


def _decode_all(body: bytes) -> None:
    for decode in (decode_deriv_ticks, decode_deriv_candles):
        try:
            decode(body, *ALL_TIME)
        except DecodeError:
            pass


@pytest.fixture(scope="module")
def seed_bodies() -> list[bytes]:
    bodies = [
        wrap(history([T, str(T + 2)], ["1.25", 1.5], pip_size=2), history([T + 4], [2])),
        wrap(candle_page((T, "1.5", 2, 1, 1.75), (T + 60, 2, 2, 2, 2))),
    ]
    root = locate_shared_dir()
    if root is not None and (root / "data" / "deriv").is_dir():
        for p in sorted((root / "data" / "deriv").glob("*.json")):
            bodies.append(wrap(p.read_text()))
    return bodies


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(body: bytes) -> None:
    _decode_all(body)
    _decode_all(b"[" + body + b"]")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
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
    | st.decimals(allow_nan=False, allow_infinity=False).map(str)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(
    base=st.sampled_from(["history", "candles"]),
    where=st.sampled_from(["page", "history", "row"]),
    key=st.sampled_from(
        ["msg_type", "history", "candles", "pip_size", "error", "times", "prices", "epoch", "open"]
    ),
    value=json_values,
)
def test_fuzz_field_values(base: str, where: str, key: str, value: Any) -> None:
    if base == "history":
        page = history([T, T + 2], ["1.5", 2.25])
        target: dict[str, Any] = page["history"] if where != "page" else page
    else:
        page = candle_page((T, "1.5", 2, 1, 1.75), (T + 60, 2, 2, 2, 2))
        target = page["candles"][1] if where == "row" else page
    target[key] = value
    _decode_all(wrap(page))
