"""Prices must be positive (points are integers, so they are always finite)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.columns import Ticks
from tickpipe_shared.wire.batch import BatchMeta

from tickpipe_validator.rules.base import Rule, RuleParams


def non_positive_price(
    ticks: Ticks, meta: BatchMeta, params: RuleParams | None = None
) -> NDArray[np.bool_]:
    """True where bid or ask is zero or negative."""
    return (ticks.bid <= 0) | (ticks.ask <= 0)


POSITIVE_PRICE = Rule(
    name="positive_price",
    bit=2,
    action="reject",
    check=non_positive_price,
    description="bid or ask is zero or negative",
)
