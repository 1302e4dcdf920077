"""Vectorized volume conversions that reproduce decimal values exactly.

Dukascopy volumes are decimals at heart: the legacy ``.bi5`` files store them as float32
(``../shared/docs/dukascopy.md §2.3, §2.4``) and the JSON API sends decimal text in units
(``§3.2``). Widening a float32 such as ``2.06f`` to float64 gives ``2.059999942779541``, and
dividing the float64 ``1.48`` by ``1e6`` need not give the float64 nearest to ``0.00000148``. The
functions here return, element by element, the float64 nearest to the decimal the source meant,
which is what the golden CSVs (``§6``) contain and what a database should show.

Both work on whole arrays with a handful of numpy passes (one per candidate number of digits, on
the still-unresolved elements only); no Python code runs per element except for values outside
the exactly-representable fast path (magnitudes below about 1e-13 or above 1e22), which real
volumes never reach.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

#: Largest power of ten exactly representable as a float64 (10^22 < 2^53 · 2^22).
_MAX_EXACT_POW10 = 22
_POW10 = np.array([10.0**k for k in range(_MAX_EXACT_POW10 + 1)], dtype=np.float64)
_TWO53 = float(2**53)
_FAST_MIN_EXP = 8 - _MAX_EXACT_POW10  # p = 9: s = 8 - e <= 22
_FAST_MAX_EXP = _MAX_EXACT_POW10  # p = 1: s = -e >= -22


def float32_to_shortest_float64(a: NDArray[np.float32]) -> NDArray[np.float64]:
    """For each float32, the float64 nearest to the shortest decimal that reads back as it.

    ``float32(2.06)`` is stored as 2.0599999427795410…; this returns the float64 ``2.06``, the
    value a human wrote and the ``.bi5`` golden CSVs show (``../shared/docs/dukascopy.md §6``).
    "Reads back" means: that float64, rounded to float32, equals the input (the same round trip
    as ``struct.pack('f', float(text))``).

    :param a: float32 array of any shape and byte order (e.g. a big-endian record field).
    :returns: float64 array of the same shape. Zeros keep their sign; NaN and ±inf pass through
        unchanged (callers decide whether they are errors).

    Method: for each element, with ``e = floor(log10|x|)`` (exact for every float32), try
    ``p = 1 … 9`` significant digits: ``m = round(|x| · 10^(p-1-e))``, ``c = m / 10^(p-1-e)``;
    the first ``c`` whose float32 equals ``x`` wins. As the power of ten is at most 10^22 and
    ``m < 10^9``, ``c`` is the correctly rounded float64 of the decimal ``m · 10^-(p-1-e)``.
    Magnitudes outside ~1e-13 … 1e21 fall back to ``float(str(np.float32(x)))`` per element.
    Volumes repeat a lot within a file and across files (a few thousand distinct values over
    hundreds of thousands of ticks), so results are remembered in :data:`_CACHE`, a fixed-size
    table keyed by bit pattern: a file whose volumes were all seen before costs a hash and two
    gathers, no search at all.
    """
    x32 = np.asarray(a, dtype=np.float32).reshape(-1)
    return _CACHE.convert(x32).reshape(np.shape(a))


class _ShortestCache:
    """Direct-mapped table float32 bit pattern → :func:`_shortest` result, fixed size.

    ``2^bits`` slots of (uint32 key, float64 value): ``12 · 2^bits`` bytes, never more. A slot
    whose key is 0 is free (bit pattern 0 is +0.0, whose value the zero-filled table already
    holds, so a free slot never gives a wrong answer). Lookups read one immutable snapshot of
    the two arrays; inserts build a new snapshot and swap it in with one assignment, so
    concurrent decoder threads never see a key without its value. Inserts only fill free slots
    (no eviction): colliding values are computed again each time, which bounds the copying.
    """

    def __init__(self, bits: int = 16) -> None:
        self._shift = np.uint32(32 - bits)
        size = 1 << bits
        self._table = (np.zeros(size, dtype=np.uint32), np.zeros(size, dtype=np.float64))

    def _slots(self, keys: NDArray[np.uint32]) -> NDArray[np.uint32]:
        return (keys * _FIB32) >> self._shift  # Fibonacci hashing: top bits of key · 2^32/φ

    def convert(self, x32: NDArray[np.float32]) -> NDArray[np.float64]:
        """:func:`float32_to_shortest_float64` of a 1-D native float32 array."""
        keys = x32.view(np.uint32)
        slot = self._slots(keys)
        table_keys, table_values = self._table
        out = table_values[slot]
        miss = table_keys[slot] != keys
        if not miss.any():
            return out
        missing = np.unique(keys[miss])
        values = _shortest(missing.view(np.float32))
        out[miss] = values[np.searchsorted(missing, keys[miss])]
        self._insert(missing, values)
        return out

    def _insert(self, keys: NDArray[np.uint32], values: NDArray[np.float64]) -> None:
        table_keys, table_values = self._table
        slot = self._slots(keys)
        free = table_keys[slot] == 0
        if not free.any():
            return
        # Two new keys may hash to the same free slot: keep one of them (numpy gives no order
        # guarantee for repeated indices, and a key must never get another key's value).
        target, first = np.unique(slot[free], return_index=True)
        pick = np.flatnonzero(free)[first]
        new_keys, new_values = table_keys.copy(), table_values.copy()
        new_keys[target] = keys[pick]
        new_values[target] = values[pick]
        self._table = (new_keys, new_values)


_FIB32 = np.uint32(0x9E3779B9)
_CACHE = _ShortestCache()
"""Process-wide memo of :func:`float32_to_shortest_float64` (768 KiB)."""


def _shortest(x32: NDArray[np.float32]) -> NDArray[np.float64]:
    """:func:`float32_to_shortest_float64` of a 1-D native float32 array, without dedup."""
    with np.errstate(invalid="ignore"):  # signalling NaNs stay NaN
        out = x32.astype(np.float64)
    idx = np.flatnonzero(np.isfinite(x32) & (x32 != 0))
    if idx.size == 0:
        return out
    target = np.abs(x32[idx])
    ax = target.astype(np.float64)
    e = np.floor(np.log10(ax)).astype(np.int64)
    # Every power of ten tried below must be exact: 10^|p-1-e| for p in 1..9 needs -13 <= e <= 22.
    fast = (e >= _FAST_MIN_EXP) & (e <= _FAST_MAX_EXP)
    slow = idx[~fast]
    idx, target, ax, e = idx[fast], target[fast], ax[fast], e[fast]
    for p in range(1, 10):
        if idx.size == 0:
            break
        s = (p - 1) - e
        pw = _POW10[np.abs(s)]
        pos = s >= 0
        scaled = np.where(pos, ax * pw, ax / pw)
        mant = np.round(scaled)
        cand = np.where(pos, mant / pw, mant * pw)
        with np.errstate(over="ignore"):
            good = cand.astype(np.float32) == target
        if good.any():
            out[idx[good]] = np.copysign(cand[good], x32[idx[good]])
            keep = ~good
            idx, target, ax, e = idx[keep], target[keep], ax[keep], e[keep]
    for i in (*slow.tolist(), *idx.tolist()):  # tiny or huge magnitudes only
        out[i] = float(str(x32[i]))
    return out


def units_to_millions(a: NDArray[np.float64]) -> NDArray[np.float64]:
    """Divide volumes in units by 10^6 decimal-exactly: the float64 nearest to ``text / 10^6``.

    ``a`` holds float64 values parsed from decimal text (JSON API ``askVolumes``/``bidVolumes``,
    ``../shared/docs/dukascopy.md §3.2``). ``a / 1e6`` double-rounds for fractional values; this
    instead finds the shortest decimal ``m · 10^-k`` (``k = 0 … 16``) that reads back as each
    value and returns ``m / 10^(k+6)``, correctly rounded because ``m < 2^53`` and
    ``10^(k+6) ≤ 10^22`` are exact. Integral values (all FX volumes) take ``k = 0`` and are
    therefore exact by construction. Values with no such representation (|x| < ~1e-10 with
    many digits, or non-finite) fall back to ``x / 1e6``.

    :param a: float64 array of volumes in units, any shape.
    :returns: float64 array of the same shape, in millions of units.
    """
    x = np.asarray(a, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        out = x / 1e6
        # All integral (FX volumes): x / 10^6 is already one correctly rounded division of
        # exact values, what the search below would give for every element (k = 0).
        if (np.abs(x) < _TWO53).all() and (np.trunc(x) == x).all():
            return out
    flat_x = x.reshape(-1)
    flat_out = out.reshape(-1)
    idx = np.flatnonzero(np.isfinite(flat_x) & (flat_x != 0))
    ax = np.abs(flat_x[idx])
    for k in range(0, _MAX_EXACT_POW10 - 6 + 1):
        if idx.size == 0:
            break
        with np.errstate(over="ignore"):
            mant = np.round(ax * _POW10[k])
        good = (mant < _TWO53) & (mant / _POW10[k] == ax)
        if good.any():
            flat_out[idx[good]] = np.copysign(mant[good] / _POW10[k + 6], flat_x[idx[good]])
            keep = ~good
            idx, ax = idx[keep], ax[keep]
    return out
