"""A price far from its neighbours': a Hampel filter on the mid price of ticks and on the close of
candles.

For each tick (candle), the median ``m`` and the median absolute deviation ``MAD`` of the mid
prices (closes) in a centred window of ``WINDOW`` rows (at the batch's edges, the nearest full
window; a batch shorter than the window uses all its rows). The row is a spike when
``|price - m| > k × max(MAD, 1 point)``. A centred median follows a genuine level shift (a step
has as many rows on each side), so only isolated excursions of fewer than half a window are
flagged; the floor keeps a flat market (MAD 0) from flagging every one-point move.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray
from tickpipe_shared.candles import Candles
from tickpipe_shared.columns import Ticks
from tickpipe_shared.wire.batch import BatchMeta

from tickpipe_validator.rules.base import Rule, RuleParams, Threshold, threshold_of

#: Default k, in MADs.
DEFAULT_K = 10.0
#: Ticks in the centred rolling window (odd). Fixed: not configurable.
WINDOW = 21
#: Smallest MAD used for ticks, in points (candles: :func:`candle_mad_floor`). Fixed.
MAD_FLOOR_POINTS = 1.0


def price_spike_mask(
    bid: NDArray[np.int64],
    ask: NDArray[np.int64],
    k: float = DEFAULT_K,
    window: int = WINDOW,
    mad_floor: float = MAD_FLOOR_POINTS,
) -> NDArray[np.bool_]:
    """True where the mid price ``(bid + ask) / 2`` (int64 points, shape ``(N,)`` each) is more
    than ``k`` MADs from the centred rolling median of ``window`` rows (MAD at least
    ``mad_floor`` points). Pass the same array twice for a single price (candle closes)."""
    n = len(bid)
    if not n:
        return np.zeros(0, dtype=np.bool_)
    # Mid in half points (bid + ask): exact integers, and floor(window / 2) is the median's index.
    mid2 = bid + ask
    w = min(window, n)
    windows = sliding_window_view(mid2, w)  # (n - w + 1, w), a view
    j = np.clip(np.arange(n) - window // 2, 0, n - w)  # the window centred on each tick
    dist = np.abs(mid2 - _median_rows(windows)[j])
    # The MAD is at least the floor, so only ticks beyond k floors can be spikes: compute the
    # MADs of their windows only (few on real data).
    out = dist > k * 2 * mad_floor
    if out.any():
        cand = np.flatnonzero(out)
        win = windows[j[cand]]
        mad = _median_rows(np.abs(win - _median_rows(win)[:, None]))
        out[cand] = dist[cand] > k * np.maximum(mad, 2 * mad_floor)
    return out


def _median_rows(a: NDArray[np.int64]) -> NDArray[np.float64] | NDArray[np.int64]:
    """Median of each row; a partition (exact, faster than :func:`numpy.median`) for odd rows."""
    w = a.shape[1]
    if w % 2:
        med: NDArray[np.int64] = np.partition(a, w // 2, axis=1)[:, w // 2]
        return med
    even: NDArray[np.float64] = np.median(a, axis=1)
    return even


def price_spikes(
    ticks: Ticks, meta: BatchMeta, params: RuleParams | None = None
) -> NDArray[np.bool_]:
    """The rule's check: :func:`price_spike_mask` with the configured k."""
    return price_spike_mask(ticks.bid, ticks.ask, threshold_of(params, DEFAULT_K))


def candle_mad_floor(candles: Candles) -> float:
    """The smallest MAD used for candle closes, in points: the batch's median ``high - low``
    over candles with a positive range (flats and single-price candles left out), at least
    :data:`MAD_FLOOR_POINTS`. A close naturally moves by about one candle's range, so a calm
    stretch of closes (MAD of a point or two) must not turn an ordinary move into a spike."""
    ranges = candles.high - candles.low
    moving = ranges[ranges > 0]
    if not len(moving):
        return MAD_FLOOR_POINTS
    return max(float(np.median(moving)), MAD_FLOOR_POINTS)


def candle_price_spikes(
    candles: Candles, meta: BatchMeta, params: RuleParams | None = None
) -> NDArray[np.bool_]:
    """The rule's check on candles: :func:`price_spike_mask` on the closes, with the configured
    k and :func:`candle_mad_floor`. Closes only: a far high or low is a genuine wick as often as
    an error."""
    k = threshold_of(params, DEFAULT_K)
    return price_spike_mask(candles.close, candles.close, k, mad_floor=candle_mad_floor(candles))


PRICE_SPIKE = Rule(
    name="price_spike",
    bit=7,
    action="flag",
    check=price_spikes,
    description=f"mid price more than k MADs from the rolling median of {WINDOW} ticks",
    threshold=Threshold(DEFAULT_K, 1.0, 1e6, "MADs"),
    candle_check=candle_price_spikes,
    candle_description=f"close more than k MADs from the rolling median of {WINDOW} candles",
)
