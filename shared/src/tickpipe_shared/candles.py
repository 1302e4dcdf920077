"""Columnar OHLCV candles as numpy arrays, the candle counterpart of :mod:`tickpipe_shared.columns`.

Prices are integer *points* (``price = points × 10^-scale``) so that they stay exact through the
pipeline; the scale travels with the batch. Volumes are float64 in the source's volume unit
(Dukascopy: millions of units of the base asset, ``../shared/docs/dukascopy.md §2.7``).

Columns are in OHLC order here whatever the on-disk order was (legacy ``.bi5`` candle records are
open, close, low, high: ``../shared/docs/dukascopy.md §2.4``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

CANDLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ts_ms", "<i8"),
    ("open", "<i8"),
    ("high", "<i8"),
    ("low", "<i8"),
    ("close", "<i8"),
    ("volume", "<f8"),
)
"""Name and little-endian dtype of each candle column, in wire order."""


@dataclass(frozen=True, slots=True)
class Candles:
    """N candles as six aligned 1-D arrays of shape ``(N,)``.

    * ``ts_ms``: int64, start of each candle in milliseconds since the Unix epoch (UTC).
    * ``open``, ``high``, ``low``, ``close``: int64, prices in points of the batch's price scale.
    * ``volume``: float64, in the batch's volume unit.

    Raises :class:`ValueError` on construction when the arrays differ in length or dtype.
    """

    ts_ms: NDArray[np.int64]
    open: NDArray[np.int64]
    high: NDArray[np.int64]
    low: NDArray[np.int64]
    close: NDArray[np.int64]
    volume: NDArray[np.float64]

    def __post_init__(self) -> None:
        n = len(self.ts_ms)
        for name, dtype in CANDLE_COLUMNS:
            arr = getattr(self, name)
            if arr.ndim != 1 or len(arr) != n:
                raise ValueError(f"candle column {name!r} has shape {arr.shape}, expected ({n},)")
            if arr.dtype != np.dtype(dtype):
                raise ValueError(f"candle column {name!r} has dtype {arr.dtype}, expected {dtype}")

    def __len__(self) -> int:
        return len(self.ts_ms)

    @classmethod
    def empty(cls) -> Candles:
        """Zero candles."""
        return cls(*(np.empty(0, dtype=d) for _, d in CANDLE_COLUMNS))

    def take(self, index: slice | NDArray[np.bool_] | NDArray[np.intp]) -> Candles:
        """The candles selected by a slice, boolean mask or index array (copies for masks)."""
        return Candles(*(getattr(self, name)[index] for name, _ in CANDLE_COLUMNS))
