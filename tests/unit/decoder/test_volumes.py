"""Decimal-exact volume conversions (``../shared/docs/dukascopy.md §2.7, §3.2, §6``)."""

from __future__ import annotations

import math
import struct
from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tickpipe_decoder.formats.volumes import (
    _ShortestCache,
    float32_to_shortest_float64,
    units_to_millions,
)


def shortest_ref(v: float) -> float:
    """Reference: fewest significant digits whose float64 rounds back to the float32 ``v``."""
    if v == 0 or not math.isfinite(v):
        return v
    for p in range(1, 10):
        text = f"{v:.{p}g}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == v:
            return float(text)
    raise AssertionError(v)  # pragma: no cover - 9 digits always round-trip


def same(a: float, b: float) -> bool:
    return (a == b and math.copysign(1, a) == math.copysign(1, b)) or (a != a and b != b)


def test_examples() -> None:
    a = np.array([2.06, 1, 0.1, 123456.79, -3.5, 999.99, 0.000001, 1e-6, 3e-7], dtype=np.float32)
    assert float32_to_shortest_float64(a).tolist() == [
        2.06, 1.0, 0.1, 123456.79, -3.5, 999.99, 0.000001, 1e-6, 3e-7
    ]  # fmt: skip
    assert np.float32(2.06).astype(np.float64) != 2.06


def test_special_values_and_shape() -> None:
    a = np.array([[0.0, -0.0], [np.nan, np.inf], [-np.inf, 1e-45]], dtype=np.float32)
    out = float32_to_shortest_float64(a)
    assert out.shape == (3, 2) and out.dtype == np.float64
    want = [0.0, -0.0, math.nan, math.inf, -math.inf, 1e-45]
    assert all(same(g, w) for g, w in zip(out.ravel().tolist(), want, strict=True))
    assert float32_to_shortest_float64(np.empty(0, dtype=np.float32)).shape == (0,)


def test_matches_reference_on_many_values() -> None:
    rng = np.random.default_rng(7)
    cents = (rng.integers(0, 10**7, 20_000) / 100).astype(np.float32)
    logu = (10 ** rng.uniform(-14, 22, 20_000)).astype(np.float32)
    bits = rng.integers(0, 2**32, 20_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    a = np.concatenate([cents, logu, bits])
    out = float32_to_shortest_float64(a).tolist()
    bad = [(v, o) for v, o in zip(a.tolist(), out, strict=True) if not same(o, shortest_ref(v))]
    assert not bad, bad[:5]


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float32, st.integers(0, 50), elements=st.floats(width=32)))
def test_property_shortest_roundtrip(a: np.ndarray) -> None:
    out = float32_to_shortest_float64(a)
    assert out.dtype == np.float64 and out.shape == a.shape
    for v, o in zip(a.tolist(), out.tolist(), strict=True):
        assert same(o, shortest_ref(v)), (v, o)


def test_units_to_millions_is_decimal_exact() -> None:
    rng = np.random.default_rng(8)
    texts = [f"{v:.2f}" for v in rng.integers(0, 10**9, 20_000) / 100]
    texts += [f"{v:.6f}" for v in rng.integers(0, 10**9, 5_000) / 10**6]
    texts += ["1800000.0", "14490000.0", "1.48", "0.17", "0", "-0.05", "1e-12", "12345678901234567"]
    values = np.array([float(t) for t in texts])
    want = [float(Decimal(t) / 10**6) for t in texts]
    got = units_to_millions(values).tolist()
    bad = [(t, g, w) for t, g, w in zip(texts, got, want, strict=True) if g != w]
    assert not bad, bad[:5]
    naive = (values / 1e6).tolist()
    assert sum(n != w for n, w in zip(naive, want, strict=True)) > 100  # why this exists


def test_units_to_millions_specials() -> None:
    out = units_to_millions(np.array([np.nan, np.inf, -np.inf, 0.0, 1e300]))
    assert math.isnan(out[0]) and out[1] == math.inf and out[2] == -math.inf
    assert out[3] == 0.0 and out[4] == 1e294


def test_tiny_cache_with_collisions_matches_reference() -> None:
    """A 4-slot cache: almost every value collides; hits, misses and refills stay exact."""
    cache = _ShortestCache(bits=2)
    rng = np.random.default_rng(10)
    for _ in range(5):
        a = (rng.integers(0, 3000, 500) / 100).astype(np.float32)
        out = cache.convert(a).tolist()
        assert all(same(o, shortest_ref(v)) for v, o in zip(a.tolist(), out, strict=True))
    keys, values = cache._table
    filled = keys != 0
    assert filled.any()
    assert values[filled].tolist() == [shortest_ref(v) for v in keys[filled].view(np.float32)]


def test_dedup_path_matches_direct() -> None:
    """Large arrays with repeats are converted per distinct value; results must not change."""
    rng = np.random.default_rng(9)
    pool = np.array([2.06, 1.0, 0.75, -0.0, 0.0, np.nan, 1e-40, 3e30, 0.1], dtype=np.float32)
    a = pool[rng.integers(0, len(pool), 4000)].reshape(40, 100)
    out = float32_to_shortest_float64(a)
    assert out.shape == (40, 100)
    for v, o in zip(a.ravel().tolist(), out.ravel().tolist(), strict=True):
        assert same(o, shortest_ref(v)), (v, o)
    big_endian = a.ravel().astype(">f4")
    assert np.array_equal(float32_to_shortest_float64(big_endian), out.ravel(), equal_nan=True)
