"""Timestamps must not go backwards."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.columns import Ticks
from tickpipe_shared.wire.batch import BatchMeta

from tickpipe_validator.rules.base import Rule, RuleParams


def goes_backwards(
    ticks: Ticks, meta: BatchMeta, params: RuleParams | None = None
) -> NDArray[np.bool_]:
    """True for each tick whose ``ts_ms`` is smaller than the previous tick's."""
    out = np.zeros(len(ticks), dtype=np.bool_)
    if len(ticks) > 1:
        out[1:] = np.diff(ticks.ts_ms) < 0
    return out


NON_DECREASING = Rule(
    name="non_decreasing",
    bit=1,
    action="flag",
    check=goes_backwards,
    description="timestamp earlier than the previous tick's",
)
