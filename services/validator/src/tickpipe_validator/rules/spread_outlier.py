"""A spread far wider than the batch's median spread."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.columns import Ticks
from tickpipe_shared.wire.batch import BatchMeta

from tickpipe_validator.rules.base import Rule, RuleParams, Threshold, threshold_of

#: Default k: a spread more than 50 × the median spread.
DEFAULT_K = 50.0
#: The median spread counts as at least one point, so that a batch of locked quotes
#: (median 0) does not flag every tick with a positive spread.
MEDIAN_FLOOR_POINTS = 1


def spread_outlier_mask(
    bid: NDArray[np.int64], ask: NDArray[np.int64], k: float = DEFAULT_K
) -> NDArray[np.bool_]:
    """True where ``ask - bid > k × max(median(ask - bid), 1 point)``; the median is over
    the given ticks (the batch)."""
    if not len(bid):
        return np.zeros(0, dtype=np.bool_)
    spread = ask - bid
    median = max(float(np.median(spread)), MEDIAN_FLOOR_POINTS)
    return spread > k * median


def spread_outliers(
    ticks: Ticks, meta: BatchMeta, params: RuleParams | None = None
) -> NDArray[np.bool_]:
    """The rule's check: :func:`spread_outlier_mask` with the configured k."""
    return spread_outlier_mask(ticks.bid, ticks.ask, threshold_of(params, DEFAULT_K))


SPREAD_OUTLIER = Rule(
    name="spread_outlier",
    bit=6,
    action="flag",
    check=spread_outliers,
    description="spread above k × the batch's median spread",
    threshold=Threshold(DEFAULT_K, 1.0, 1e6, "× the median spread"),
)
