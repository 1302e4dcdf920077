"""Volumes must be finite and not negative; NaN is allowed only where the source gives no volume.

A batch whose ``meta.volume_unit`` is ``none`` (Deriv ticks, sources without volume) carries NaN
volumes by contract (``tickpipe_shared.wire.batch``): NaN is then "not given", not an error.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.candles import Candles
from tickpipe_shared.columns import Ticks
from tickpipe_shared.wire.batch import BatchMeta

from tickpipe_validator.rules.base import Rule, RuleParams

#: ``BatchMeta.volume_unit`` of a source that gives no volume (the columns are NaN).
NO_VOLUME = "none"


def bad_volume_mask(volume: NDArray[np.float64], nan_allowed: bool) -> NDArray[np.bool_]:
    """True where ``volume`` (float64, shape ``(N,)``) is negative, infinite or, unless
    ``nan_allowed``, NaN."""
    ok = np.isfinite(volume) & (volume >= 0)
    if nan_allowed:
        ok |= np.isnan(volume)
    out: NDArray[np.bool_] = ~ok
    return out


def bad_volume(
    ticks: Ticks, meta: BatchMeta, params: RuleParams | None = None
) -> NDArray[np.bool_]:
    """True where a bid or ask volume is negative, infinite, or NaN while the batch's volume
    unit is not ``none``."""
    nan_ok = meta.volume_unit == NO_VOLUME
    return bad_volume_mask(ticks.bid_volume, nan_ok) | bad_volume_mask(ticks.ask_volume, nan_ok)


def candle_bad_volume(
    candles: Candles, meta: BatchMeta, params: RuleParams | None = None
) -> NDArray[np.bool_]:
    """True where the candle's volume is negative, infinite, or NaN while the batch's volume
    unit is not ``none``."""
    return bad_volume_mask(candles.volume, meta.volume_unit == NO_VOLUME)


NON_NEGATIVE_VOLUME = Rule(
    name="non_negative_volume",
    bit=4,
    action="flag",
    check=bad_volume,
    description="bid or ask volume negative or not a number",
    candle_check=candle_bad_volume,
    candle_description="volume negative or not a number",
)
