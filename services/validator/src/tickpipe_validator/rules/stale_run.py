"""A long run of ticks with the same bid and ask: a feed that stopped updating."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.columns import Ticks
from tickpipe_shared.wire.batch import BatchMeta

from tickpipe_validator.rules.base import Rule, RuleParams, Threshold, threshold_of

#: Default n: runs of at least 500 ticks.
DEFAULT_N = 500


def stale_run_mask(
    bid: NDArray[np.int64], ask: NDArray[np.int64], n: int = DEFAULT_N
) -> NDArray[np.bool_]:
    """True for every tick but the first of each run of ≥ ``n`` consecutive ticks whose bid and
    ask are both unchanged from the previous tick."""
    size = len(bid)
    if not size:
        return np.zeros(0, dtype=np.bool_)
    same = np.zeros(size, dtype=np.bool_)
    same[1:] = (bid[1:] == bid[:-1]) & (ask[1:] == ask[:-1])
    run = np.cumsum(~same) - 1  # run index of each tick (the first tick starts run 0)
    length = np.bincount(run)
    out: NDArray[np.bool_] = same & (length[run] >= n)
    return out


def stale_runs(
    ticks: Ticks, meta: BatchMeta, params: RuleParams | None = None
) -> NDArray[np.bool_]:
    """The rule's check: :func:`stale_run_mask` with the configured n."""
    return stale_run_mask(ticks.bid, ticks.ask, int(threshold_of(params, DEFAULT_N)))


STALE_RUN = Rule(
    name="stale_run",
    bit=8,
    action="flag",
    check=stale_runs,
    description="in a run of at least n ticks with unchanged bid and ask (after its first)",
    threshold=Threshold(DEFAULT_N, 2, 10_000_000, "ticks", integer=True),
)
