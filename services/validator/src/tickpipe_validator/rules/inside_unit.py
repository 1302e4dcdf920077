"""Ticks must lie inside their unit's time window ``[unit_start, unit_end)``."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.columns import Ticks
from tickpipe_shared.wire.batch import BatchMeta

from tickpipe_validator.rules.base import Rule, RuleParams


def outside_unit(
    ticks: Ticks, meta: BatchMeta, params: RuleParams | None = None
) -> NDArray[np.bool_]:
    """True for ticks with ``ts_ms`` before the unit's start or at/after its end."""
    ts = ticks.ts_ms
    return (ts < meta.unit_start_ms) | (ts >= meta.unit_end_ms)


INSIDE_UNIT = Rule(
    name="inside_unit",
    bit=0,
    action="reject",
    check=outside_unit,
    description="timestamp outside the unit's [start, end) window",
    allowed=("drop", "reject"),
)
