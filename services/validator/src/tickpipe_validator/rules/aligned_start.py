"""A candle must start on its timeframe's grid: a 5m candle at :00, :05, :10… (UTC).

Checked only where the sources' grid is known (``../shared/docs``): fixed timeframes shorter than
a day that divide a day evenly (1s … 12h), on multiples of the timeframe from UTC midnight
(Dukascopy files and Deriv epochs are UTC-aligned). Not checked: days and longer (Polygon's daily
stock bars start at midnight New York time, 04:00Z or 05:00Z, its index bars at 05:00Z/06:00Z),
calendar timeframes (months…), and timeframes that do not divide a day (7m: the source's anchor
is unknown). Polygon aggregates of stocks, indices and other non-UTC markets may be anchored at
New York midnight, which is a whole number of hours from UTC: for them a timeframe longer than
an hour is only checked to the hour (the grid is ``gcd(timeframe, 1h)``).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.candles import Candles
from tickpipe_shared.kinds import DAY_MS, HOUR_MS
from tickpipe_shared.wire.batch import BatchMeta

from tickpipe_validator.rules.base import Rule, RuleParams

#: Sources whose day may start at a local (non-UTC) midnight, except for the classes below.
LOCAL_DAY_SOURCES = frozenset({"polygon"})
#: Asset classes those sources align on UTC days (Polygon: crypto and FX bars start at 00:00Z).
UTC_DAY_CLASSES = frozenset({"fx", "crypto"})


def alignment_step_ms(meta: BatchMeta) -> int | None:
    """The grid (ms, from the epoch) that the candle starts of ``meta``'s batch must lie on, or
    ``None`` when the alignment is not checked (see the module docstring).

    Raises :class:`~tickpipe_shared.kinds.KindError` for a malformed ``meta.unit.kind``.
    """
    timeframe = meta.parsed_kind.timeframe
    step = None if timeframe is None else timeframe.duration_ms
    if step is None or step >= DAY_MS or DAY_MS % step:
        return None
    if meta.unit.source in LOCAL_DAY_SOURCES and meta.asset_class not in UTC_DAY_CLASSES:
        return math.gcd(step, HOUR_MS)
    return step


def misaligned_mask(ts_ms: NDArray[np.int64], step_ms: int) -> NDArray[np.bool_]:
    """True where ``ts_ms`` (int64 ms, shape ``(N,)``) is not a multiple of ``step_ms``."""
    out: NDArray[np.bool_] = ts_ms % step_ms != 0
    return out


def misaligned(
    candles: Candles, meta: BatchMeta, params: RuleParams | None = None
) -> NDArray[np.bool_]:
    """The rule's check: :func:`misaligned_mask` with :func:`alignment_step_ms` (hits nothing
    when the alignment is not checked)."""
    step = alignment_step_ms(meta)
    if step is None:
        return np.zeros(len(candles), dtype=np.bool_)
    return misaligned_mask(candles.ts_ms, step)


ALIGNED_START = Rule(
    name="aligned_start",
    bit=11,
    action="flag",
    candle_check=misaligned,
    candle_description="candle start not on the timeframe's UTC grid",
)
