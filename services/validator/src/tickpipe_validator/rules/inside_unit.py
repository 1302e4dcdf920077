"""Ticks and candles must lie inside their unit's time window ``[unit_start, unit_end)``."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.candles import Candles
from tickpipe_shared.columns import Ticks
from tickpipe_shared.wire.batch import BatchMeta

from tickpipe_validator.rules.base import Rule, RuleParams


def outside_window(ts_ms: NDArray[np.int64], meta: BatchMeta) -> NDArray[np.bool_]:
    """True where ``ts_ms`` (int64 ms, shape ``(N,)``) is before the unit's start or at/after
    its end."""
    out: NDArray[np.bool_] = (ts_ms < meta.unit.start_ms) | (ts_ms >= meta.unit.end_ms)
    return out


def outside_unit(
    ticks: Ticks, meta: BatchMeta, params: RuleParams | None = None
) -> NDArray[np.bool_]:
    """True for ticks with ``ts_ms`` before the unit's start or at/after its end."""
    return outside_window(ticks.ts_ms, meta)


def candle_outside_unit(
    candles: Candles, meta: BatchMeta, params: RuleParams | None = None
) -> NDArray[np.bool_]:
    """True for candles that start before the unit's start or at/after its end (the start is
    what the writer replaces units by; a daily candle may end after a yearly unit)."""
    return outside_window(candles.ts_ms, meta)


INSIDE_UNIT = Rule(
    name="inside_unit",
    bit=0,
    action="reject",
    check=outside_unit,
    description="timestamp outside the unit's [start, end) window",
    allowed=("drop", "reject"),
    candle_check=candle_outside_unit,
    candle_description="candle start outside the unit's [start, end) window",
)
