"""Prices must be positive (points are integers, so they are always finite: the decoders reject
non-finite prices)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.candles import Candles
from tickpipe_shared.columns import Ticks
from tickpipe_shared.wire.batch import BatchMeta

from tickpipe_validator.rules.base import Rule, RuleParams


def non_positive_price(
    ticks: Ticks, meta: BatchMeta, params: RuleParams | None = None
) -> NDArray[np.bool_]:
    """True where bid or ask is zero or negative."""
    return (ticks.bid <= 0) | (ticks.ask <= 0)


def candle_non_positive_price(
    candles: Candles, meta: BatchMeta, params: RuleParams | None = None
) -> NDArray[np.bool_]:
    """True where open, high, low or close is zero or negative."""
    c = candles
    return (c.open <= 0) | (c.high <= 0) | (c.low <= 0) | (c.close <= 0)


POSITIVE_PRICE = Rule(
    name="positive_price",
    bit=2,
    action="reject",
    check=non_positive_price,
    description="bid or ask is zero or negative",
    candle_check=candle_non_positive_price,
    candle_description="open, high, low or close is zero or negative",
)
