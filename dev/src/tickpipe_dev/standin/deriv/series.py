"""Synthetic Deriv data: a deterministic seeded random walk per symbol and UTC day (ticks every
2 s, every 1 s for ``1HZ*``; ``frx*`` closed at weekends), and candles aggregated from it."""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

DAY_S = 86_400
#: Nothing is served before this epoch (2015-01-01T00:00:00Z): "before history" is empty.
HISTORY_START_S = 1_420_070_400


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """How a synthetic symbol behaves: decimals of its prices, level, seconds between ticks,
    and whether it trades on weekdays only (forex)."""

    pip_size: int
    base: float
    interval_s: int = 2
    weekdays_only: bool = False


SYMBOLS: dict[str, SymbolSpec] = {
    "R_10": SymbolSpec(3, 6000.0),
    "R_25": SymbolSpec(3, 3000.0),
    "R_50": SymbolSpec(4, 200.0),
    "R_75": SymbolSpec(4, 50000.0),
    "R_100": SymbolSpec(2, 1000.0),
    "1HZ10V": SymbolSpec(2, 9000.0, 1),
    "1HZ25V": SymbolSpec(2, 600000.0, 1),
    "1HZ50V": SymbolSpec(2, 200.0, 1),
    "1HZ75V": SymbolSpec(2, 4000.0, 1),
    "1HZ100V": SymbolSpec(2, 1000.0, 1),
    "frxEURUSD": SymbolSpec(5, 1.1, 2, True),
    "frxGBPUSD": SymbolSpec(5, 1.3, 2, True),
    "frxUSDJPY": SymbolSpec(3, 110.0, 2, True),
}

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class SyntheticSeries:
    """Deterministic ticks for every symbol of :data:`SYMBOLS`, and candles built from them.

    Per UTC day: a random walk (step σ = 10⁻⁴ × the symbol's level) seeded by ``(seed, symbol,
    day)`` from a level that drifts slowly over the year, rounded to ``pip_size`` decimals. The
    same seed always gives the same prices; days are generated lazily and the last
    ``cache_days`` are kept.
    """

    def __init__(
        self, seed: int = 0, history_start_s: int = HISTORY_START_S, cache_days: int = 64
    ) -> None:
        self.seed = seed
        self.history_start_s = history_start_s
        self._cache: OrderedDict[tuple[str, int], tuple[IntArray, FloatArray]] = OrderedDict()
        self._cache_days = cache_days

    def day(self, symbol: str, day: int) -> tuple[IntArray, FloatArray]:
        """Ticks of UTC day number ``day`` (days since 1970-01-01): epochs (s, int64, ascending)
        and prices (float64). Empty before the history start, on closed days, for unknown
        symbols."""
        key = (symbol, day)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        out = self._generate(symbol, day)
        self._cache[key] = out
        if len(self._cache) > self._cache_days:
            self._cache.popitem(last=False)
        return out

    def _generate(self, symbol: str, day: int) -> tuple[IntArray, FloatArray]:
        spec = SYMBOLS.get(symbol)
        start = day * DAY_S
        closed = spec is None or start + DAY_S <= self.history_start_s or day < 0
        if not closed and spec is not None and spec.weekdays_only:
            closed = datetime.fromtimestamp(start, tz=UTC).weekday() >= 5
        if closed or spec is None:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        n = DAY_S // spec.interval_s
        times = start + np.arange(n, dtype=np.int64) * spec.interval_s
        rng = np.random.default_rng([self.seed, zlib.crc32(symbol.encode()), day])
        level = spec.base * (
            1 + 0.1 * math.sin(2 * math.pi * day / 365.25) + 0.02 * rng.standard_normal()
        )
        walk = np.cumsum(rng.standard_normal(n) * spec.base * 1e-4)
        prices = np.round(level + walk, spec.pip_size)
        keep = times >= self.history_start_s
        return times[keep], prices[keep]

    def _days_back(self, start: int, end: int) -> range:
        first = max(start, self.history_start_s) // DAY_S
        return range(end // DAY_S, first - 1, -1)

    def ticks(self, symbol: str, start: int, end: int, count: int) -> tuple[list[int], list[float]]:
        """The newest ``count`` ticks with ``start <= epoch <= end`` (s): epochs and prices,
        ascending."""
        times: list[IntArray] = []
        prices: list[FloatArray] = []
        total = 0
        if end >= start:
            for day in self._days_back(start, end):
                t, p = self.day(symbol, day)
                lo, hi = np.searchsorted(t, start, "left"), np.searchsorted(t, end, "right")
                if hi > lo:
                    times.append(t[lo:hi])
                    prices.append(p[lo:hi])
                    total += int(hi - lo)
                if total >= count:
                    break
        if not times:
            return [], []
        all_t = np.concatenate(times[::-1])[-count:]
        all_p = np.concatenate(prices[::-1])[-count:]
        return [int(x) for x in all_t], [float(x) for x in all_p]

    def candles(
        self, symbol: str, granularity: int, start: int, end: int, count: int
    ) -> list[dict[str, Any]]:
        """The newest ``count`` candles of ``granularity`` seconds whose bucket start ``epoch``
        is in ``[start, end]``, built from the ticks in ``[start, end]`` (so a bucket cut by
        ``end`` is partial, as the real server's), ascending: ``{close, epoch, high, low,
        open}``."""
        buckets: dict[int, list[float]] = {}  # epoch → [open, high, low, close]
        if end >= start:
            for day in self._days_back(start, end):
                t, p = self.day(symbol, day)
                lo, hi = np.searchsorted(t, start, "left"), np.searchsorted(t, end, "right")
                if hi > lo:
                    _merge_day(buckets, t[lo:hi], p[lo:hi], granularity)
                # Buckets starting on or after this day's start have all their ticks now.
                done = sum(1 for e in buckets if e >= day * DAY_S and e >= start)
                if done >= count:
                    break
        epochs = sorted(e for e in buckets if e >= start)[-count:]
        return [
            {"close": buckets[e][3], "epoch": e, "high": buckets[e][1], "low": buckets[e][2],
             "open": buckets[e][0]}
            for e in epochs
        ]  # fmt: skip


def _merge_day(
    buckets: dict[int, list[float]], t: IntArray, p: FloatArray, granularity: int
) -> None:
    """Fold one day's ticks (ascending) into ``buckets``, which hold only later ticks."""
    epochs = t - t % granularity
    first = np.flatnonzero(np.r_[True, epochs[1:] != epochs[:-1]])
    last = np.r_[first[1:], len(t)] - 1
    highs = np.maximum.reduceat(p, first)
    lows = np.minimum.reduceat(p, first)
    for i, j, high, low in zip(first.tolist(), last.tolist(), highs.tolist(), lows.tolist(),
                               strict=True):  # fmt: skip
        epoch = int(epochs[i])
        later = buckets.get(epoch)
        if later is None:
            buckets[epoch] = [float(p[i]), high, low, float(p[j])]
        else:
            later[0] = float(p[i])
            later[1] = max(later[1], high)
            later[2] = min(later[2], low)
