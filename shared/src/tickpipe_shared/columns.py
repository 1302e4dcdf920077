"""Columnar tick data as numpy arrays: the in-memory shape every stage shares.

Prices are integer *points* (``price = points × 10^-scale``) so that they stay exact through the
pipeline; the scale travels with the batch. Volumes are float64 in the source's volume unit
(Dukascopy: millions of units of the base asset).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

TICK_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ts_ms", "<i8"),
    ("bid", "<i8"),
    ("ask", "<i8"),
    ("bid_volume", "<f8"),
    ("ask_volume", "<f8"),
)
"""Name and little-endian dtype of each tick column, in wire order."""


@dataclass(frozen=True, slots=True)
class Ticks:
    """N ticks as five aligned 1-D arrays of shape ``(N,)``.

    * ``ts_ms``: int64, milliseconds since the Unix epoch (UTC).
    * ``bid``, ``ask``: int64, prices in points of the batch's price scale.
    * ``bid_volume``, ``ask_volume``: float64, in the batch's volume unit.

    Raises :class:`ValueError` on construction when the arrays differ in length or dtype.
    """

    ts_ms: NDArray[np.int64]
    bid: NDArray[np.int64]
    ask: NDArray[np.int64]
    bid_volume: NDArray[np.float64]
    ask_volume: NDArray[np.float64]

    def __post_init__(self) -> None:
        n = len(self.ts_ms)
        for name, dtype in TICK_COLUMNS:
            arr = getattr(self, name)
            if arr.ndim != 1 or len(arr) != n:
                raise ValueError(f"tick column {name!r} has shape {arr.shape}, expected ({n},)")
            if arr.dtype != np.dtype(dtype):
                raise ValueError(f"tick column {name!r} has dtype {arr.dtype}, expected {dtype}")

    def __len__(self) -> int:
        return len(self.ts_ms)

    @classmethod
    def empty(cls) -> Ticks:
        """Zero ticks."""
        return cls(*(np.empty(0, dtype=d) for _, d in TICK_COLUMNS))

    def take(self, index: slice | NDArray[np.bool_] | NDArray[np.intp]) -> Ticks:
        """The ticks selected by a slice, boolean mask or index array (copies for masks)."""
        return Ticks(*(getattr(self, name)[index] for name, _ in TICK_COLUMNS))
