"""Fast path of the JSON decoder: number arrays parsed from bytes must equal ``json.loads``.

Whatever :func:`parse_number_array` / :func:`split_columns` accept, ``json.loads`` accepts too
and gives the same numbers bit for bit; everything else falls back (``None``).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.shared_data import locate_shared_dir
from tickpipe_decoder.formats import dukascopy_json
from tickpipe_decoder.formats.number_arrays import parse_number_array, split_columns


def reference(text: bytes, integer: bool) -> np.ndarray | None:
    """What ``json.loads`` then numpy make of ``[text]``; None: the fast path must decline."""
    try:
        values = json.loads(b"[" + text + b"]")
    except ValueError:
        return None
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
        return None
    if integer and any(isinstance(v, float) for v in values):
        return None
    return np.asarray(values, dtype=np.int64 if integer else np.float64)


def check(text: bytes, integer: bool) -> np.ndarray | None:
    got = parse_number_array(text, integer=integer)
    if got is not None:
        want = reference(text, integer)
        assert want is not None, f"{text!r} accepted but json.loads refuses it"
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), (text, got, want)
    return got


@pytest.mark.parametrize(
    ("text", "integer", "taken"),
    [
        (b"93,104,-2,0", True, True),
        (b"1800000.0,900000.0,14490000.0", False, True),
        (b"1.0E-5,-2.5e+3,0e0,-0.0,-0", False, True),
        (b"", True, True),
        (b"0.5", True, False),  # a decimal in an integer column: json.loads path decides
        (b"01", True, False),
        (b"1.", False, False),
        (b".5", False, False),
        (b"1e", False, False),
        (b"1,,2", True, False),
        (b"1,", True, False),
        (b"-", True, False),
        (b"1-2", True, False),
        (b"1e5.5", False, False),
        (b"+1", False, False),
        (b"1 ,2", True, False),
        (b"1e23", False, False),  # beyond the exact fast path
        (b"9007199254740993", False, False),
        (b"1234567890123456789", True, False),  # longer than MAX_TOKEN
    ],
)
def test_examples(text: bytes, integer: bool, taken: bool) -> None:
    assert (check(text, integer) is not None) == taken


def test_minus_zero_follows_json_loads() -> None:
    out = parse_number_array(b"-0,-0.0", integer=False)
    assert out is not None
    assert np.signbit(out).tolist() == [False, True]


numbers = st.one_of(
    st.integers(-(10**17) + 1, 10**17 - 1),  # at most MAX_TOKEN characters
    st.floats(allow_nan=False, allow_infinity=False),
    st.decimals(
        allow_nan=False, allow_infinity=False, places=4, min_value=-(10**9), max_value=10**9
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(numbers, min_size=1, max_size=8))
def test_property_same_as_json_loads(values: list[Any]) -> None:
    text = ",".join(str(v) if not isinstance(v, float) else json.dumps(v) for v in values)
    check(text.encode(), integer=False)
    if all(isinstance(v, int) for v in values):
        assert check(text.encode(), integer=True) is not None


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789-+.eE,", max_size=30))
def test_property_garbage_never_accepted_wrongly(text: str) -> None:
    check(text.encode(), integer=False)
    check(text.encode(), integer=True)


def test_split_columns_declines_other_layouts() -> None:
    names, integer = ("times", "asks"), (True, True)
    good = b'{"timestamp":5,"times":[1,2],"asks":[0,-1]}'
    parsed = split_columns(good, names, integer)
    assert parsed is not None
    skeleton, cols = parsed
    assert skeleton == {"timestamp": 5, "times": [], "asks": []}
    assert [c.tolist() for c in cols] == [[1, 2], [0, -1]]
    for bad in (
        b'{"timestamp":5,"times": [1,2],"asks":[0,-1]}',  # whitespace
        b'{"timestamp":5,"times":[1,2],"asks":[0,-1],"times":[3]}',  # duplicate key
        b'{"timestamp":[5],"times":[1,2],"asks":[0,-1]}',  # another array
        b'{"x":"\\"times\\":[1]","asks":[0]}',  # the key only inside a string
        b'{"timestamp":5,"times":[1,2],"asks":[0,-1]',  # truncated
    ):
        assert split_columns(bad, names, integer) is None, bad


def _recorded_bodies() -> list[tuple[str, bytes]]:
    root = locate_shared_dir()
    if root is None:
        pytest.skip("../shared/data is absent: recorded JSON bodies not available")
    base = root / "data" / "dukascopy" / "json"
    return [("ticks", p.read_bytes()) for p in sorted((base / "ticks").rglob("*.json"))] + [
        ("candles", p.read_bytes()) for p in sorted((base / "candles").rglob("*.json"))
    ]


KINDS = {
    "ticks": (
        dukascopy_json.decode_json_ticks,
        dukascopy_json._TICK_COLUMNS,
        dukascopy_json._TICK_INTEGER,
    ),
    "candles": (
        dukascopy_json.decode_json_candles,
        dukascopy_json._CANDLE_COLUMNS,
        dukascopy_json._CANDLE_INTEGER,
    ),
}


def test_recorded_bodies_take_the_fast_path_with_identical_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bodies = _recorded_bodies()
    fast: list[Any] = []
    for kind, body in bodies:
        decode, names, integer = KINDS[kind]
        assert split_columns(body, names, integer) is not None, kind
        fast.append(decode(body))  # type: ignore[operator]
    monkeypatch.setattr(dukascopy_json, "split_columns", lambda *a: None)
    for (kind, body), (got, got_scale) in zip(bodies, fast, strict=True):
        slow, scale = KINDS[kind][0](body)  # type: ignore[operator]
        assert scale == got_scale
        for name in slow.__dataclass_fields__:
            a, b = getattr(slow, name), getattr(got, name)
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), (kind, name)
