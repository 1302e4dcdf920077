"""Which decoded candles are stored: the rules every candle format shares. Pure numpy.

* **Closed candles only.** A candle whose period had not ended when the payload was fetched
  (``end > fetched_at_ms``) is partial: Deriv builds its newest candle from the ticks up to the
  request's ``end`` (``../shared/docs/deriv.md §3.4``), the Dukascopy JSON API's open bucket
  (``?from=``) ends with the current period, Polygon may return the running bar. Such a candle
  would later change, so it is dropped; re-fetching the unit after the period closed stores it.
  The end of a fixed timeframe (s … w) is ``start + length``; of a calendar one (mo, q, y) the
  same day and time ``count`` months (× 3 for quarters, × 12 for years) later, clamped to the
  last day of a shorter month.
* **No flats.** Legacy ``.bi5`` candle files are dense: a period without trading is a *flat*
  (open = high = low = close = the previous close, volume exactly 0,
  ``../shared/docs/dukascopy.md §2.4``), whereas the JSON API lists traded periods only (§3.2,
  §4). Flats carry no market information, so the decoder drops them from dense files and both
  Dukascopy sources store the same rows for the same period. A traded period at a single price
  has O = H = L = C too but a non-zero volume, and is kept.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.candles import Candles
from tickpipe_shared.kinds import DAY_MS, Timeframe

_MONTHS = {"mo": 1, "q": 3, "y": 12}


def candle_ends_ms(ts_ms: NDArray[np.int64], timeframe: Timeframe) -> NDArray[np.int64]:
    """End (exclusive) of each candle starting at ``ts_ms``.

    :param ts_ms: int64 ms since the epoch (UTC), shape ``(N,)``: candle starts.
    :param timeframe: the candles' timeframe.
    :returns: int64 ms, shape ``(N,)``: ``ts_ms + length`` for fixed timeframes; for calendar
        ones the same day of month and time of day ``count`` months, quarters or years later
        (day clamped to the target month's length: 31 January + 1 mo → 28/29 February).
    """
    ts = np.asarray(ts_ms, dtype=np.int64)
    length = timeframe.duration_ms
    if length is not None:
        return ts + np.int64(length)
    months = _MONTHS[timeframe.unit] * timeframe.count
    month = ts.astype("datetime64[ms]").astype("datetime64[M]")
    month_start = month.astype("datetime64[ms]").astype(np.int64)
    offset = ts - month_start
    target = month + np.timedelta64(months, "M")
    target_start = target.astype("datetime64[ms]").astype(np.int64)
    target_days = (
        (target + np.timedelta64(1, "M")).astype("datetime64[ms]").astype(np.int64) - target_start
    ) // DAY_MS
    day = np.minimum(offset // DAY_MS, target_days - 1)
    result: NDArray[np.int64] = target_start + day * DAY_MS + offset % DAY_MS
    return result


def closed_mask(
    ts_ms: NDArray[np.int64], timeframe: Timeframe, fetched_at_ms: int
) -> NDArray[np.bool_]:
    """True for each candle whose period had ended by ``fetched_at_ms`` (ms since the epoch)."""
    closed: NDArray[np.bool_] = candle_ends_ms(ts_ms, timeframe) <= fetched_at_ms
    return closed


def flat_mask(candles: Candles) -> NDArray[np.bool_]:
    """True for each flat: volume exactly 0 and open = high = low = close (dense ``.bi5``)."""
    flat: NDArray[np.bool_] = (
        (candles.volume == 0)
        & (candles.open == candles.high)
        & (candles.high == candles.low)
        & (candles.low == candles.close)
    )
    return flat
