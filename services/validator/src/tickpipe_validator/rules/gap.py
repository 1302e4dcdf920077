"""A tick that ends a long silence while the market was open.

The silence is measured in *open market time* from the instrument's
:class:`~tickpipe_shared.instruments.schedule.TradingSchedule`: weekends, holidays and other
closed hours do not count, so the first tick after a weekend is not a gap. The previous tick is
the previous tick of the batch; for the first tick of a unit's part 0 it is the unit's start (a
silence from the top of the hour). Silences across units are not seen (each batch is validated
alone), nor are open hours with no tick at all. Without a schedule the rule hits nothing.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.columns import Ticks
from tickpipe_shared.instruments.schedule import TradingSchedule
from tickpipe_shared.wire.batch import BatchMeta

from tickpipe_validator.rules.base import Rule, RuleParams, Threshold, threshold_of

#: Default g: five minutes without a tick (FX).
DEFAULT_SECONDS = 300.0


def gap_mask(
    ts_ms: NDArray[np.int64],
    schedule: TradingSchedule,
    seconds: float = DEFAULT_SECONDS,
    start_ms: int | None = None,
) -> NDArray[np.bool_]:
    """True for each tick after more than ``seconds`` of open market without a tick. The first
    tick is compared with ``start_ms`` (``None``: never a gap)."""
    if not len(ts_ms):
        return np.zeros(0, dtype=np.bool_)
    prev = np.empty_like(ts_ms)
    prev[1:] = ts_ms[:-1]
    prev[0] = ts_ms[0] if start_ms is None else start_ms
    return schedule.open_ms_between(prev, ts_ms) > seconds * 1000


def gaps(ticks: Ticks, meta: BatchMeta, params: RuleParams | None = None) -> NDArray[np.bool_]:
    """The rule's check: :func:`gap_mask` with the configured seconds and the batch's schedule."""
    if params is None or params.schedule is None:
        return np.zeros(len(ticks), dtype=np.bool_)
    start = meta.unit_start_ms if meta.part == 0 else None
    return gap_mask(ticks.ts_ms, params.schedule, threshold_of(params, DEFAULT_SECONDS), start)


GAP = Rule(
    name="gap",
    bit=9,
    action="flag",
    check=gaps,
    description="first tick after more than g seconds without ticks while the market was open",
    threshold=Threshold(DEFAULT_SECONDS, 1.0, 7 * 86400.0, "seconds"),
)
