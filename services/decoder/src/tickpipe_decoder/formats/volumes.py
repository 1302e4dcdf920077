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
_FAST_MIN_EXP = 9 - _MAX_EXACT_POW10  # p = 10: s = 9 - e <= 22
_FAST_MAX_EXP = _MAX_EXACT_POW10 - 1  # p = 0: s = -1 - e >= -22


def float32_to_shortest_float64(a: NDArray[np.float32]) -> NDArray[np.float64]:
    """For each float32, the float64 nearest to the shortest decimal that reads back as it.

    ``float32(2.06)`` is stored as 2.0599999427795410…; this returns the float64 ``2.06``, the
    value a human wrote and the ``.bi5`` golden CSVs show (``../shared/docs/dukascopy.md §6``).
    "Reads back" means: that float64, rounded to float32, equals the input (the same round trip
    as ``struct.pack('f', float(text))``).

    :param a: 1-D (or any shape) float32 array.
    :returns: float64 array of the same shape. Zeros keep their sign; NaN and ±inf pass through
        unchanged (callers decide whether they are errors).

    Method: for each element, with ``e = floor(log10|x|)``, try ``p = 1 … 9`` significant
    digits (plus one either side to absorb ``log10`` rounding): ``m = round(|x| · 10^(p-1-e))``,
    ``c = m / 10^(p-1-e)``; the first ``c`` whose float32 equals ``x`` wins. While the power of
    ten is at most 10^22 and ``m < 2^53``, ``c`` is the correctly rounded float64 of the decimal
    ``m · 10^-(p-1-e)``. Elements outside that range fall back to ``float(str(np.float32(x)))``.
    """
    x32 = np.asarray(a, dtype=np.float32)
    with np.errstate(invalid="ignore"):  # signalling NaNs stay NaN
        out = x32.astype(np.float64)
    flat_x = x32.reshape(-1)
    flat_out = out.reshape(-1)
    idx = np.flatnonzero(np.isfinite(flat_x) & (flat_x != 0))
    if idx.size == 0:
        return out
    target = np.abs(flat_x[idx])
    ax = target.astype(np.float64)
    e = np.floor(np.log10(ax)).astype(np.int64)
    # Every power of ten tried below must be exact: 10^|p-1-e| for p in 0..10 needs -13 <= e <= 21.
    fast = (e >= _FAST_MIN_EXP) & (e <= _FAST_MAX_EXP)
    slow = idx[~fast]
    idx, target, ax, e = idx[fast], target[fast], ax[fast], e[fast]
    for p in range(0, 11):  # 1..9 significant digits, ±1 for an off-by-one e
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
            flat_out[idx[good]] = np.copysign(cand[good], flat_x[idx[good]])
            keep = ~good
            idx, target, ax, e = idx[keep], target[keep], ax[keep], e[keep]
    for i in (*slow.tolist(), *idx.tolist()):  # tiny or huge magnitudes only
        flat_out[i] = float(str(flat_x[i]))
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
