"""Polygon aggregates decoder: every recorded response, checked against the JSON values, plus
self-made pages (merge, de-duplication, scale, volume unit, errors, fuzz).

Source of truth: ``../shared/docs/polygon.md §3–§5`` and ``../shared/data/polygon``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.shared_data import locate_shared_dir
from tickpipe_decoder.errors import DecodeError
from tickpipe_decoder.formats.polygon import decode_polygon_aggs, volume_unit_for

ALL_TIME = (0, 2**50)


def wrap(*pages: Any) -> bytes:
    """A ``polygon-aggs`` payload: the page bodies in an array (``str`` pages verbatim)."""
    texts = [p if isinstance(p, str) else json.dumps(p) for p in pages]
    return ("[" + ",".join(texts) + "]").encode()


@pytest.fixture(scope="module")
def polygon_dir() -> Path:
    root = locate_shared_dir()
    if root is None or not (root / "data" / "polygon").is_dir():
        pytest.skip("../shared/data/polygon not found beside the repo (set TICKPIPE_SHARED_DIR)")
    return root / "data" / "polygon"


def capture_files(polygon_dir: Path) -> list[Path]:
    return sorted(polygon_dir.glob("aggs_*.json"))


def repr_decimals(x: float) -> int:
    text = repr(float(x))
    assert "e" not in text, text
    frac = text.partition(".")[2]
    return 0 if frac == "0" else len(frac)


def test_every_capture_decodes_to_its_bars(polygon_dir: Path) -> None:
    files = capture_files(polygon_dir)
    assert len(files) == 7
    for path in files:
        text = path.read_text()
        raw = json.loads(text)
        bars = sorted(raw["results"], key=lambda b: b["t"])
        aggs = decode_polygon_aggs(wrap(text), *ALL_TIME)
        prices = [b[k] for b in bars for k in "ohlc"]
        assert aggs.scale == max(repr_decimals(x) for x in prices), path.name
        assert aggs.candles.ts_ms.tolist() == [b["t"] for b in bars]
        for name, key in (("open", "o"), ("high", "h"), ("low", "l"), ("close", "c")):
            points = getattr(aggs.candles, name).tolist()
            # Exact: the points are the decimal of the price as sent, and read back as it.
            assert points == [int(Decimal(repr(float(b[key]))).scaleb(aggs.scale)) for b in bars]
            assert [p / 10**aggs.scale for p in points] == [float(b[key]) for b in bars]
        volumes = aggs.candles.volume.tolist()
        assert [v if "v" in b else "absent" for v, b in zip(volumes, bars, strict=True)] == [
            float(b["v"]) if "v" in b else "absent" for b in bars
        ]


def test_desc_capture_equals_asc_capture(polygon_dir: Path) -> None:
    asc = decode_polygon_aggs(
        wrap(
            (polygon_dir / "aggs_I_NDX_1_day_2023-01-01_2023-05-10_asc_limit10000.json").read_text()
        ),
        *ALL_TIME,
    )
    desc = decode_polygon_aggs(
        wrap(
            (
                polygon_dir / "aggs_I_NDX_1_day_2023-01-01_2023-05-10_desc_limit49999.json"
            ).read_text()
        ),
        *ALL_TIME,
    )
    assert len(asc.candles) == 54 and asc.scale == desc.scale == 11
    for name in ("ts_ms", "open", "high", "low", "close"):
        np.testing.assert_array_equal(getattr(desc.candles, name), getattr(asc.candles, name))
    assert np.all(np.diff(desc.candles.ts_ms) > 0)


def test_index_bars_have_no_volume(polygon_dir: Path) -> None:
    path = polygon_dir / "aggs_I_NDX_1_day_2023-01-01_2023-05-10_asc_limit10000.json"
    aggs = decode_polygon_aggs(wrap(path.read_text()), *ALL_TIME)
    assert np.isnan(aggs.candles.volume).all()
    assert aggs.volume_unit == "none"
    # Without the ticker prefix the unit still follows from the bars: none has a volume.
    assert (
        decode_polygon_aggs(wrap(path.read_text()), *ALL_TIME, ticker="NDX").volume_unit == "none"
    )


def test_crypto_integer_prices(polygon_dir: Path) -> None:
    path = polygon_dir / "aggs_X_BTCUSD_1_day_2023-01-01_2023-01-10_asc.json"
    assert b'"h":17506,' in path.read_bytes()  # serialised without a decimal point
    aggs = decode_polygon_aggs(wrap(path.read_text()), *ALL_TIME)
    assert aggs.scale == 2 and aggs.volume_unit == "units"
    assert aggs.candles.high.tolist()[-1] == 1750600
    assert aggs.candles.open.tolist()[0] == 1653200
    assert aggs.candles.volume.tolist()[0] == 12300.315533316923


def test_forex_volume_is_a_tick_count(polygon_dir: Path) -> None:
    path = polygon_dir / "aggs_C_EURUSD_1_day_2023-01-01_2023-01-10_desc.json"
    aggs = decode_polygon_aggs(wrap(path.read_text()), *ALL_TIME, ticker="C:EURUSD")
    assert aggs.volume_unit == "ticks" and aggs.scale == 5
    assert aggs.candles.ts_ms.tolist()[0] == 1672531200000  # sorted ascending
    assert aggs.candles.volume.tolist()[0] == 12.0
    # The ticker comes from the page when none is given.
    assert decode_polygon_aggs(wrap(path.read_text()), *ALL_TIME).volume_unit == "ticks"


def test_paginated_capture_split_and_overlapping(polygon_dir: Path) -> None:
    page = json.loads(
        (polygon_dir / "aggs_AAPL_1_minute_2023-07-31_limit10_page1_next_url.json").read_text()
    )
    bars = page["results"]
    first = {**page, "results": bars[:6]}
    second = {**page, "results": bars[4:], "next_url": None}  # overlaps bars 4 and 5
    whole = decode_polygon_aggs(wrap(page), *ALL_TIME)
    merged = decode_polygon_aggs(wrap(second, first), *ALL_TIME)
    for name in ("ts_ms", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(merged.candles, name), getattr(whole.candles, name))
    assert len(whole.candles) == 10 and whole.scale == 2


def test_error_capture_names_the_status(polygon_dir: Path) -> None:
    body = wrap(
        (
            polygon_dir / "error_NOT_AUTHORIZED_aggs_AAPL_1_day_2024-12-31_2024-12-31.json"
        ).read_text()
    )
    with pytest.raises(
        DecodeError,
        match=r"^polygon aggs: page 0 has status 'NOT_AUTHORIZED': \"Your plan doesn't include",
    ):
        decode_polygon_aggs(body, *ALL_TIME)


# --- self-made pages -----------------------------------------------------------------------

T = 1_672_531_200_000  # 2023-01-01T00:00Z
DAY = 86_400_000


def bar(t: Any, o: Any, h: Any, low: Any, c: Any, **extra: Any) -> dict[str, Any]:
    return {"t": t, "o": o, "h": h, "l": low, "c": c, **extra}


def page(*bars: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"ticker": "AAPL", "status": "OK", "results": list(bars), **extra}


def test_merge_dedupe_sort_and_clip() -> None:
    p1 = page(bar(T + 2 * DAY, 3, 3, 3, 3, v=30), bar(T + DAY, 2, 2, 2, 2.5, v=20))
    p2 = page(bar(T + DAY, 9, 9, 9, 9, v=90), bar(T, 1, 1, 1, 1.25, v=10))
    p3 = page(bar(T + 3 * DAY, 4, 4, 4, 4, v=40))  # outside the unit
    aggs = decode_polygon_aggs(wrap(p1, p2, p3), T, T + 3 * DAY)
    assert aggs.scale == 2
    assert aggs.candles.ts_ms.tolist() == [T, T + DAY, T + 2 * DAY]
    assert aggs.candles.close.tolist() == [125, 250, 300]  # T+DAY from p1, the first page
    assert aggs.candles.volume.tolist() == [10.0, 20.0, 30.0]


def test_no_results() -> None:
    for body in (wrap(page()), wrap({"status": "OK", "resultsCount": 0}), wrap({"results": None})):
        aggs = decode_polygon_aggs(body, *ALL_TIME)
        assert len(aggs.candles) == 0 and aggs.scale is None
    assert decode_polygon_aggs(b"[]", *ALL_TIME).scale is None


def test_delayed_status_is_data() -> None:
    aggs = decode_polygon_aggs(wrap(page(bar(T, 1, 1, 1, 1), status="DELAYED")), *ALL_TIME)
    assert len(aggs.candles) == 1


def test_mixed_volume_presence() -> None:
    aggs = decode_polygon_aggs(
        wrap(page(bar(T, 1, 1, 1, 1, v=5), bar(T + DAY, 1, 1, 1, 1))), *ALL_TIME
    )
    assert aggs.candles.volume[0] == 5 and np.isnan(aggs.candles.volume[1])
    assert aggs.volume_unit == "units"


@pytest.mark.parametrize(
    ("ticker", "bars", "with_volume", "unit"),
    [
        ("C:EURUSD", 3, 3, "ticks"),
        ("C:EURUSD", 0, 0, "ticks"),
        ("I:NDX", 3, 0, "none"),
        ("AAPL", 3, 0, "none"),
        ("AAPL", 3, 1, "units"),
        ("AAPL", 0, 0, "units"),
        ("X:BTCUSD", 2, 2, "units"),
    ],
)
def test_volume_unit_for(ticker: str, bars: int, with_volume: int, unit: str) -> None:
    assert volume_unit_for(ticker, bars, with_volume) == unit


def test_scale_is_the_most_decimals_and_points_are_exact() -> None:
    aggs = decode_polygon_aggs(wrap(page(bar(T, 0.1, 2.25, 17506, 12085.67432708806))), *ALL_TIME)
    assert aggs.scale == 11
    assert aggs.candles.open.tolist() == [10_000_000_000]
    assert aggs.candles.high.tolist() == [225_000_000_000]
    assert aggs.candles.low.tolist() == [1_750_600_000_000_000]
    assert aggs.candles.close.tolist() == [1_208_567_432_708_806]
    assert aggs.candles.close[0] / 10**11 == 12085.67432708806


def test_points_where_the_float_product_rounds_the_wrong_way() -> None:
    x = 4152.949915167767
    assert round(x * 1e12) / 1e12 != x  # the naive conversion is off by one point
    aggs = decode_polygon_aggs(wrap(page(bar(T, x, x, x, x))), *ALL_TIME)
    assert aggs.scale == 12
    assert aggs.candles.open.tolist() == [4_152_949_915_167_767]


BAD: list[tuple[bytes, str]] = [
    (b"", "polygon aggs: empty body (0 bytes) is not a JSON array of pages"),
    (b"[{]", "polygon aggs: truncated or invalid JSON at char 2"),
    (
        json.dumps(page()).encode(),
        "polygon aggs: top-level JSON value is an object, expected an array of page bodies",
    ),
    (wrap(page(), "null"), "polygon aggs: page 1 is null, expected a JSON object"),
    (
        wrap({"status": "ERROR", "error": "bad date"}),
        "polygon aggs: page 0 has status 'ERROR': 'bad date'",
    ),
    (wrap({"results": {"t": 1}}), "polygon aggs: page 0 field 'results' is an object"),
    (
        wrap(page(bar(T, 1, 1, 1, 1), 7)),  # type: ignore[arg-type]
        "polygon aggs: page 0 bar 1 is a number, expected an object",
    ),
    (wrap(page({"o": 1, "h": 1, "l": 1, "c": 1})), "polygon aggs: page 0 bar 0 has no 't'"),
    (wrap(page({"t": T, "o": 1, "h": 1, "c": 1})), "polygon aggs: page 0 bar 0 has no 'l'"),
    (
        wrap(page(bar(T, 1, "1.5", 1, 1))),
        "polygon aggs: page 0 bar 0 field 'h' is a string, expected a number",
    ),
    (
        wrap(page(bar(T, 1, 1, 1, True))),
        "polygon aggs: page 0 bar 0 field 'c' is a boolean, expected a number",
    ),
    (
        wrap(page(bar(T, 1, 1, 1, 1, v=[1]))),
        "polygon aggs: page 0 bar 0 field 'v' is an array, expected a number",
    ),
    (
        wrap(page(bar(T, 1, 1, 1, 1), bar(T + 1, float("nan"), 1, 1, 1))),
        "polygon aggs: page 0 bar 1 field 'o' is nan, not a finite number",
    ),
    (
        wrap(page(bar(T, 1, 1, 1, 1, v=float("inf")))),
        "polygon aggs: page 0 bar 0 field 'v' is inf, not a finite number",
    ),
    (
        wrap(page(bar(T, 10**400, 1, 1, 1))),
        "polygon aggs: page 0 bar 0 field 'o' is 1000000000000000000000000000000000000",
    ),
    (
        wrap(page(bar(T + 0.5, 1, 1, 1, 1))),
        "polygon aggs: page 0 bar 0 field 't' is 1672531200000.5, not a whole number of ms",
    ),
    (
        wrap(page(bar(2**60, 1, 1, 1, 1))),
        "polygon aggs: page 0 bar 0 field 't' is 1152921504606846976, not a whole number of ms",
    ),
    (
        wrap(page(bar(T, 1, 1, 1, 1)), page(bar(T, 1, 2.0**60, 1, 1))),
        "polygon aggs: page 1 bar 0 field 'h' is 1.152921504606847e+18, beyond 2^53",
    ),
    (
        wrap(page(bar(T, 1, 0.30000000000000004, 1, 1))),
        "polygon aggs: page 0 bar 0 field 'h' is 0.30000000000000004, which needs more than 12",
    ),
    (
        wrap(page(bar(T, 1, 1, 1e-13, 1))),
        "polygon aggs: page 0 bar 0 field 'l' is 1e-13, which needs more than 12 decimals",
    ),
    (
        wrap(page(bar(T, 1, 1, 1, 1), bar(T + 1, 12085.67432708806, 1, 1e-12, 1))),
        "polygon aggs: page 0 bar 1 field 'o' is 12085.67432708806, beyond 2^53 points at scale 12",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD, ids=[m[14:70] for _, m in BAD])
def test_bad_payloads(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_polygon_aggs(body, *ALL_TIME)
    assert str(info.value).startswith(message), str(info.value)


# --- fuzz: only DecodeError may escape ---------------------------------------------------


def _decode(body: bytes) -> None:
    try:
        decode_polygon_aggs(body, *ALL_TIME)
    except DecodeError:
        pass


@pytest.fixture(scope="module")
def seed_bodies() -> list[bytes]:
    bodies = [wrap(page(bar(T, 1.5, 2, 1, 1.75, v=3), bar(T + DAY, 17506, 17506, 17506, 17506)))]
    root = locate_shared_dir()
    if root is not None and (root / "data" / "polygon").is_dir():
        for p in sorted((root / "data" / "polygon").glob("*.json")):
            bodies.append(wrap(p.read_text()[:3000]))
    return bodies


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(body: bytes) -> None:
    _decode(body)
    _decode(b"[" + body + b"]")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzz_mutated_text(seed_bodies: list[bytes], data: st.DataObject) -> None:
    body = bytearray(data.draw(st.sampled_from(seed_bodies), label="seed"))
    for _ in range(data.draw(st.integers(0, 6), label="edits")):
        pos = data.draw(st.integers(0, len(body) - 1))
        body[pos] = data.draw(st.sampled_from(b'0123456789-.,:[]{}"enulltrueE+ \xff'))
    _decode(bytes(body[: data.draw(st.integers(0, len(body)), label="cut")]))
    _decode(bytes(body))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(
    in_bar=st.booleans(),
    key=st.sampled_from(["status", "results", "ticker", "t", "o", "h", "l", "c", "v"]),
    value=json_values,
)
def test_fuzz_field_values(in_bar: bool, key: str, value: Any) -> None:
    p = page(bar(T, 1.5, 2, 1, 1.75, v=3), bar(T + DAY, 2, 2, 2, 2))
    target: dict[str, Any] = p["results"][1] if in_bar else p
    target[key] = value
    _decode(wrap(p))


def _repr_decimals(x: float) -> int:
    """Decimals of the shortest round-trip text of ``x`` (``1e-06`` → 6, ``12.0`` → 0)."""
    exponent = Decimal(repr(x)).normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


@settings(max_examples=300, deadline=None)
@given(
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)
    | st.decimals(min_value=-1e6, max_value=1e6, places=6).map(float)
)
def test_scale_is_the_repr_decimals(x: float) -> None:
    d = _repr_decimals(x)
    fits = d <= 12 and abs(int(Decimal(repr(x)).scaleb(d))) < 2**53
    try:
        aggs = decode_polygon_aggs(wrap(page(bar(T, x, x, x, x))), *ALL_TIME)
    except DecodeError:
        assert not fits, x
        return
    assert aggs.scale == d
    assert aggs.candles.open.tolist() == [int(Decimal(repr(x)).scaleb(d))]
    assert aggs.candles.open[0] / 10**d == x
