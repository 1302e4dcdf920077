"""Time must not go backwards: tick timestamps and candle starts."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.candles import Candles
from tickpipe_shared.columns import Ticks
from tickpipe_shared.wire.batch import BatchMeta

from tickpipe_validator.rules.base import Rule, RuleParams


def backwards_mask(ts_ms: NDArray[np.int64]) -> NDArray[np.bool_]:
    """True for each row whose ``ts_ms`` (int64 ms, shape ``(N,)``) is smaller than the
    previous row's."""
    out = np.zeros(len(ts_ms), dtype=np.bool_)
    if len(ts_ms) > 1:
        out[1:] = np.diff(ts_ms) < 0
    return out


def goes_backwards(
    ticks: Ticks, meta: BatchMeta, params: RuleParams | None = None
) -> NDArray[np.bool_]:
    """True for each tick whose ``ts_ms`` is smaller than the previous tick's."""
    return backwards_mask(ticks.ts_ms)


def candle_goes_backwards(
    candles: Candles, meta: BatchMeta, params: RuleParams | None = None
) -> NDArray[np.bool_]:
    """True for each candle that starts before the previous candle (a start equal to the
    previous one is the ``duplicate`` rule's)."""
    return backwards_mask(candles.ts_ms)


NON_DECREASING = Rule(
    name="non_decreasing",
    bit=1,
    action="flag",
    check=goes_backwards,
    description="timestamp earlier than the previous tick's",
    candle_check=candle_goes_backwards,
    candle_description="candle start earlier than the previous candle's",
)
