"""Deterministic synthetic ticks: one unit's ticks from ``(instrument, unit start, seed)``.

Nothing depends on other units or on the order units are generated in, so any process (the
fetcher's ``synthetic`` source, the scale bench verifying the database, a test) regenerates
exactly the same rows for a unit. Everything is vectorised numpy: an hour of 36 000 ticks takes
about a millisecond.

Model (per unit of ``[start_ms, end_ms)``):

* **Count**: Poisson with mean ``ticks_per_hour × hours`` when the trading schedule has the
  market open in the unit, else 0 (weekends and holidays of the schedule are empty units).
* **Times**: distinct, strictly increasing ms inside the unit (no two ticks share a ms, so the
  validator's ``duplicate`` rule never drops a generated row).
* **Prices** in integer points: a level that drifts slowly with time (deterministic in the unit
  start), plus a Gaussian random walk inside the unit whose hourly standard deviation is
  ``volatility`` of the level; the bid is the walk rounded, the ask the bid plus
  ``spread_points`` plus 0–50 % jitter (never crossed).
* **Volumes**: whole hundredths in ``[0.01, 9.99]`` (millions, like Dukascopy), exact through
  float32 (``.bi5``) and float64 storage.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tickpipe_shared.columns import Ticks

HOUR_MS = 3_600_000
#: Mean price level of an instrument, in units of its quote currency.
_BASE_LEVELS = {"JPY": 150.0, "XAU": 2000.0}


@dataclass(frozen=True, slots=True)
class SyntheticParams:
    """What the generator is asked for.

    ``ticks_per_hour``: mean ticks in an open hour (>= 0); ``volatility``: standard deviation of
    the price over one hour, as a fraction of its level (e.g. 0.001 = 0.1 %); ``spread_points``:
    smallest ask - bid in points (>= 0); ``seed``: any non-negative integer; changing it changes
    every unit.
    """

    ticks_per_hour: float = 36_000.0
    volatility: float = 0.001
    spread_points: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ticks_per_hour < 0 or self.volatility < 0 or self.spread_points < 0:
            raise ValueError(f"synthetic parameters must not be negative: {self}")
        if self.seed < 0:
            raise ValueError(f"synthetic seed must be >= 0, not {self.seed}")


def price_scale_of(instrument: str) -> int:
    """Price scale of a synthetic instrument: 3 for names containing JPY or XAU, else 5."""
    upper = instrument.upper()
    return 3 if any(c in upper for c in _BASE_LEVELS) else 5


def _level_points(instrument: str, start_ms: int, scale: int) -> float:
    upper = instrument.upper()
    base = next((v for c, v in _BASE_LEVELS.items() if c in upper), 1.1)
    # A slow deterministic drift (±5 % over ~a month) so candles and aggregates move.
    phase = start_ms / (30 * 24 * HOUR_MS) * 2 * np.pi
    return float(base * (1.0 + 0.05 * np.sin(phase)) * 10.0**scale)


def _rng(instrument: str, start_ms: int, seed: int) -> np.random.Generator:
    name = zlib.crc32(instrument.encode())
    return np.random.default_rng([seed, name, start_ms // 1000])


def generate_ticks(
    instrument: str,
    start_ms: int,
    end_ms: int,
    *,
    market_open: bool | None,
    params: SyntheticParams,
    scale: int | None = None,
) -> Ticks:
    """The ticks of unit ``[start_ms, end_ms)`` (ms since the epoch, UTC) of ``instrument``.

    ``market_open``: whether the trading schedule has the market open in the unit (``None``,
    unknown, counts as open); ``scale``: price scale (default :func:`price_scale_of`). Returns
    :class:`~tickpipe_shared.columns.Ticks` of shape ``(N,)``: ``ts_ms`` strictly increasing in
    the unit, ``bid < ask`` in points, volumes whole hundredths. Raises :class:`ValueError` for
    an empty or inverted span.
    """
    span = end_ms - start_ms
    if span <= 0:
        raise ValueError(f"unit span [{start_ms}, {end_ms}) is empty")
    if market_open is False:
        return Ticks.empty()
    scale = price_scale_of(instrument) if scale is None else scale
    rng = _rng(instrument, start_ms, params.seed)
    n = min(int(rng.poisson(params.ticks_per_hour * span / HOUR_MS)), span)
    if n == 0:
        return Ticks.empty()
    # n distinct sorted offsets in [0, span): sorted draws in [0, span - n] plus 0..n-1.
    offsets = np.sort(rng.integers(0, span - n + 1, n, dtype=np.int64))
    offsets += np.arange(n, dtype=np.int64)
    level = _level_points(instrument, start_ms, scale)
    step = params.volatility * level / np.sqrt(n)
    walk = level + np.cumsum(rng.standard_normal(n) * step)
    spread = params.spread_points + rng.integers(0, params.spread_points // 2 + 1, n)
    bid = np.maximum(np.rint(walk - spread / 2), 1).astype(np.int64)
    ask = bid + spread.astype(np.int64)
    vols = rng.integers(1, 1000, (2, n)).astype(np.float64) / 100.0
    return Ticks(
        ts_ms=offsets + start_ms,
        bid=bid,
        ask=ask,
        bid_volume=vols[0],
        ask_volume=vols[1],
    )


def unit_tick_counts(
    instrument: str, starts_ms: NDArray[np.int64], open_: NDArray[np.bool_], params: SyntheticParams
) -> NDArray[np.int64]:
    """Tick count of each hour unit starting at ``starts_ms`` (shape ``(U,)``) without
    generating the ticks; ``open_`` (shape ``(U,)``): the schedule's market-open flag per unit.
    Equals ``len(generate_ticks(...))`` of each unit."""
    counts = np.zeros(len(starts_ms), dtype=np.int64)
    for i, (start, is_open) in enumerate(zip(starts_ms.tolist(), open_.tolist(), strict=True)):
        if is_open:
            n = _rng(instrument, start, params.seed).poisson(params.ticks_per_hour)
            counts[i] = min(int(n), HOUR_MS)
    return counts
