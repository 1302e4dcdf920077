"""Candle consistency: the high is the highest price and the low the lowest."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.candles import Candles
from tickpipe_shared.wire.batch import BatchMeta

from tickpipe_validator.rules.base import Rule, RuleParams


def candle_high_low(candles: Candles) -> NDArray[np.bool_]:
    """True for each candle with ``high < max(open, close)``, ``low > min(open, close)`` or
    ``low > high`` (int64 points, shape ``(N,)``)."""
    top = np.maximum(candles.open, candles.close)
    bottom = np.minimum(candles.open, candles.close)
    return (candles.high < top) | (candles.low > bottom) | (candles.low > candles.high)


def high_low_inconsistent(
    candles: Candles, meta: BatchMeta, params: RuleParams | None = None
) -> NDArray[np.bool_]:
    """The rule's check: :func:`candle_high_low`."""
    return candle_high_low(candles)


CANDLE_HIGH_LOW = Rule(
    name="candle_high_low",
    bit=10,
    action="flag",
    candle_check=high_low_inconsistent,
    candle_description="high below open or close, or low above open, close or high",
)
