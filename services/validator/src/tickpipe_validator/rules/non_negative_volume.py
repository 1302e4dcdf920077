"""Volumes must be finite and not negative."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.columns import Ticks
from tickpipe_shared.wire.batch import BatchMeta

from tickpipe_validator.rules.base import Rule, RuleParams


def bad_volume(
    ticks: Ticks, meta: BatchMeta, params: RuleParams | None = None
) -> NDArray[np.bool_]:
    """True where a bid or ask volume is negative, NaN or infinite."""
    bid, ask = ticks.bid_volume, ticks.ask_volume
    return ~(np.isfinite(bid) & np.isfinite(ask) & (bid >= 0) & (ask >= 0))


NON_NEGATIVE_VOLUME = Rule(
    name="non_negative_volume",
    bit=4,
    action="flag",
    check=bad_volume,
    description="bid or ask volume negative or not a number",
)
