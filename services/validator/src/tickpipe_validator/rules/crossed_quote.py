"""A quote is crossed when the bid is above the ask."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.columns import Ticks
from tickpipe_shared.wire.batch import BatchMeta

from tickpipe_validator.rules.base import Rule, RuleParams


def crossed(ticks: Ticks, meta: BatchMeta, params: RuleParams | None = None) -> NDArray[np.bool_]:
    """True where ``bid > ask`` (a locked quote, bid == ask, is allowed)."""
    return ticks.bid > ticks.ask


CROSSED_QUOTE = Rule(
    name="crossed_quote",
    bit=3,
    action="flag",
    check=crossed,
    description="bid above ask",
)
