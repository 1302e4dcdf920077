"""Candle consistency: the high is the highest price and the low the lowest.

Candles do not flow through the pipeline yet (only ticks do), so this is a pure function over
:class:`~tickpipe_shared.candles.Candles` without a bit in the ticks' ``flags`` column; it will
become a candle rule when candle batches exist.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.candles import Candles


def candle_high_low(candles: Candles) -> NDArray[np.bool_]:
    """True for each candle with ``high < max(open, close)``, ``low > min(open, close)`` or
    ``low > high``."""
    top = np.maximum(candles.open, candles.close)
    bottom = np.minimum(candles.open, candles.close)
    return (candles.high < top) | (candles.low > bottom) | (candles.low > candles.high)
