"""A row repeating the previous one: a tick identical in every column, a candle with the same
start (one candle per start: a second one is a duplicate even when its prices differ)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.candles import Candles
from tickpipe_shared.columns import Ticks
from tickpipe_shared.wire.batch import BatchMeta

from tickpipe_validator.rules.base import Rule, RuleParams


def _same_float(a: NDArray[np.float64]) -> NDArray[np.bool_]:
    """``a[i] == a[i-1]`` for i ≥ 1, counting NaN as equal to NaN."""
    prev, cur = a[:-1], a[1:]
    out: NDArray[np.bool_] = (cur == prev) | (np.isnan(cur) & np.isnan(prev))
    return out


def duplicate_mask(ticks: Ticks) -> NDArray[np.bool_]:
    """True for each tick equal to the previous tick in ``ts_ms``, ``bid``, ``ask``,
    ``bid_volume`` and ``ask_volume`` (volumes compared as numbers, NaN equal to NaN). The first
    of a set of copies is not a duplicate; with action ``drop`` exactly one copy survives."""
    out = np.zeros(len(ticks), dtype=np.bool_)
    if len(ticks) > 1:
        ts, bid, ask = ticks.ts_ms, ticks.bid, ticks.ask
        out[1:] = (
            (ts[1:] == ts[:-1])
            & (bid[1:] == bid[:-1])
            & (ask[1:] == ask[:-1])
            & _same_float(ticks.bid_volume)
            & _same_float(ticks.ask_volume)
        )
    return out


def duplicates(
    ticks: Ticks, meta: BatchMeta, params: RuleParams | None = None
) -> NDArray[np.bool_]:
    """The rule's check: :func:`duplicate_mask`."""
    return duplicate_mask(ticks)


def candle_duplicates(
    candles: Candles, meta: BatchMeta, params: RuleParams | None = None
) -> NDArray[np.bool_]:
    """True for each candle starting at the same ``ts_ms`` as the previous candle. The first
    of a set is not a duplicate; with action ``drop`` the first one survives."""
    ts = candles.ts_ms
    out = np.zeros(len(ts), dtype=np.bool_)
    if len(ts) > 1:
        out[1:] = ts[1:] == ts[:-1]
    return out


DUPLICATE = Rule(
    name="duplicate",
    bit=5,
    action="drop",
    check=duplicates,
    description="identical to the previous tick in every column",
    candle_check=candle_duplicates,
    candle_description="same start as the previous candle",
)
