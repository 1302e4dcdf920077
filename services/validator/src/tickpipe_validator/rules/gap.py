"""A long silence while the market was open, at a tick or at the edges of a unit.

The silence is measured in *open market time* from the instrument's
:class:`~tickpipe_shared.instruments.schedule.TradingSchedule`: weekends, holidays and other
closed hours do not count, so the first tick after a weekend is not a gap. A tick is hit when:

* more than g seconds of open market passed since the previous tick of the batch or, for the
  first tick of a unit's part 0, since the unit's start (a *leading* silence);
* it is the latest tick of a unit's last part and more than g seconds of open market pass from it
  to the unit's end, or to the download time when the unit was fetched before it ended (a
  *trailing* silence: the hour stopped ticking while the market was open).

Each batch is validated alone, so a silence across a unit boundary is seen only when its part on
one side alone exceeds g, and an open unit without any tick is not seen at all (the fetcher marks
it ``suspect_empty`` in the ledger). Without a schedule the rule hits nothing.
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
    end_ms: int | None = None,
) -> NDArray[np.bool_]:
    """True for each tick after more than ``seconds`` of open market without a tick, and for the
    latest tick when more than ``seconds`` of open market follow it until ``end_ms``.

    ``ts_ms``: int64 ms, shape ``(N,)``, in row order (a tick earlier than its predecessor ends
    no silence). The first tick is compared with ``start_ms`` (``None``: never a gap); the
    latest tick (the last of equal maxima) with ``end_ms`` (``None``: no trailing check).
    """
    if not len(ts_ms):
        return np.zeros(0, dtype=np.bool_)
    prev = np.empty_like(ts_ms)
    prev[1:] = ts_ms[:-1]
    prev[0] = ts_ms[0] if start_ms is None else start_ms
    limit = seconds * 1000
    if end_ms is None:
        hit: NDArray[np.bool_] = schedule.open_ms_between(prev, ts_ms) > limit
        return hit
    # The trailing silence rides along as one more (from, to) pair: one schedule query.
    latest = len(ts_ms) - 1 - int(np.argmax(ts_ms[::-1]))
    both = np.append(prev, ts_ms[latest]), np.append(ts_ms, np.int64(end_ms))
    hit = schedule.open_ms_between(*both) > limit
    out = hit[:-1]
    out[latest] |= hit[-1]
    return out


def gaps(ticks: Ticks, meta: BatchMeta, params: RuleParams | None = None) -> NDArray[np.bool_]:
    """The rule's check: :func:`gap_mask` with the configured seconds and the batch's schedule;
    leading silence from the unit's start in part 0, trailing silence to the unit's end (or the
    download time, if earlier) in the last part."""
    if params is None or params.schedule is None:
        return np.zeros(len(ticks), dtype=np.bool_)
    start = meta.unit.start_ms if meta.part == 0 else None
    # No tick can exist after the download: a unit fetched while open ends at the fetch time.
    last = meta.part == meta.part_count - 1
    end = min(meta.unit.end_ms, meta.fetched_at_ms) if last else None
    seconds = threshold_of(params, DEFAULT_SECONDS)
    return gap_mask(ticks.ts_ms, params.schedule, seconds, start, end)


GAP = Rule(
    name="gap",
    bit=9,
    action="flag",
    check=gaps,
    description="more than g seconds of open market without ticks before it (or, for the "
    "unit's latest tick, after it)",
    threshold=Threshold(DEFAULT_SECONDS, 1.0, 7 * 86400.0, "seconds"),
)
