"""Rows as Arrow record batches: the one in-memory form every serializer reads.

Ticks arrive as binary ``COPY`` data of fixed-width rows (:class:`TickCopyReader`, parsed with
numpy without a Python loop per row); candles as asyncpg records (:func:`records_batch`).

Column types (:func:`schema_of`): ``ts`` timestamp[ms, UTC] (the bar's open time for candles);
prices ``decimal128(18, scale)`` — the exact decimal at the instrument's scale, one more decimal
for mid prices, built straight from the stored integer points — or float64 with
``price_format=float``; volumes float64 (nullable, the source's
unit); ``flags`` int16; ``tick_count`` int64. The schema's metadata say the source and units.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
from numpy.typing import NDArray

from tickpipe_api.series import Series

#: Microseconds from the Unix epoch to PostgreSQL's epoch (2000-01-01).
_PG_EPOCH_US = 946_684_800_000_000
#: Binary COPY header: signature (11), flags (4), header extension length (4).
_HEADER = 19
#: One tick row of :func:`tickpipe_api.queries.tick_copy_sql` in binary COPY format.
TICK_ROW = np.dtype(
    [
        ("n", ">i2"),
        ("l_ts", ">i4"),
        ("ts", ">i8"),
        ("l_bid", ">i4"),
        ("bid", ">i8"),
        ("l_ask", ">i4"),
        ("ask", ">i8"),
        ("l_bv", ">i4"),
        ("bid_volume", ">f8"),
        ("l_av", ">i4"),
        ("ask_volume", ">f8"),
        ("l_flags", ">i4"),
        ("flags", ">i2"),
    ]
)
PRICES = frozenset({"bid", "ask", "open", "high", "low", "close"})


def price_type(series: Series) -> pa.DataType:
    """decimal128(18, scale) or float64, per the series' price format."""
    if series.price_format == "float":
        return pa.float64()
    return pa.decimal128(18, series.price_scale)


def schema_of(series: Series, columns: Sequence[str]) -> pa.Schema:
    """The Arrow schema of ``series`` with its source and units in the metadata."""
    fields = []
    for c in columns:
        if c == "ts":
            t: pa.DataType = pa.timestamp("ms", tz="UTC")
        elif c in PRICES:
            t = price_type(series)
        elif c == "flags":
            t = pa.int16()
        elif c == "tick_count":
            t = pa.int64()
        else:
            t = pa.float64()
        fields.append(pa.field(c, t, nullable=c not in ("ts", "flags", "tick_count")))
    meta = {
        "instrument": series.instrument,
        "source": series.description(),
        "ts": "UTC, ms; candles: open time",
        "price_scale": str(series.price_scale),
        "price_format": series.price_format,
        "volume": "source unit (Dukascopy: millions)",
    }
    return pa.schema(fields, metadata=meta)


def _prices(points: NDArray[np.int64], series: Series) -> pa.Array:
    """Prices in points at ``series.price_scale`` as the series' price type: decimal128 straight
    from the integers (exact), or float64 ``points / 10^scale`` (correctly rounded: the double
    nearest the decimal)."""
    scale = series.price_scale
    if series.price_format == "float":
        return pa.array(points / float(10**scale), type=pa.float64())
    raw = np.empty(2 * len(points), dtype="<i8")
    raw[0::2] = points
    raw[1::2] = points >> 63  # sign extension: the high 64 bits of the int128
    return pa.Array.from_buffers(pa.decimal128(18, scale), len(points), [None, pa.py_buffer(raw)])


#: Significant digits volume sums are rounded to. Source volumes have at most 9 (Dukascopy's are
#: float32 shown as their shortest decimal), so rounding keeps them as they are and only drops
#: the float8 summation noise of candle sums (6146.840000000001 → 6146.84).
VOLUME_DIGITS = 12


def canonical_volumes(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """``values`` rounded to :data:`VOLUME_DIGITS` significant digits (NaN, 0 and ±inf kept).
    Rounding as ``round(v * 10**k) / 10**k`` gives the double nearest the decimal (the division
    is correctly rounded). Pure; same shape and dtype."""
    finite = np.isfinite(values) & (values != 0)
    out = values.copy()
    v = values[finite]
    k = VOLUME_DIGITS - 1 - np.floor(np.log10(np.abs(v))).astype(np.int64)
    k = np.clip(k, 0, 22)  # 10**22 is the largest power of ten a double holds exactly
    scale = 10.0**k
    out[finite] = np.round(v * scale) / scale
    return out


def _volumes(values: NDArray[np.float64]) -> pa.Array:
    return pa.array(canonical_volumes(values), type=pa.float64(), from_pandas=True)  # NaN → null


def tick_batch(rows: NDArray[Any], series: Series, schema: pa.Schema) -> pa.RecordBatch:
    """A record batch of parsed binary COPY tick rows (:data:`TICK_ROW`)."""
    us = rows["ts"].astype(np.int64) + _PG_EPOCH_US
    ts = pa.array(us // 1000, type=pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    arrays = [
        ts,
        _prices(rows["bid"].astype(np.int64), series),
        _prices(rows["ask"].astype(np.int64), series),
        _volumes(rows["bid_volume"].astype(np.float64)),
        _volumes(rows["ask_volume"].astype(np.float64)),
        pa.array(rows["flags"].astype(np.int16), type=pa.int16()),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class TickCopyReader:
    """Parses binary ``COPY`` output of :func:`~tickpipe_api.queries.tick_copy_sql` fed in
    arbitrary chunks into arrays of whole :data:`TICK_ROW` rows."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._header_done = False
        self.rows = 0

    def feed(self, chunk: bytes) -> NDArray[Any] | None:
        """Add ``chunk``; return the complete rows it finished (``None`` when none)."""
        self._buf += chunk
        if not self._header_done:
            if len(self._buf) < _HEADER:
                return None
            ext = int.from_bytes(self._buf[15:19], "big")
            if len(self._buf) < _HEADER + ext:
                return None
            del self._buf[: _HEADER + ext]
            self._header_done = True
        n = len(self._buf) // TICK_ROW.itemsize
        if n == 0:
            return None
        size = n * TICK_ROW.itemsize
        rows = np.frombuffer(bytes(self._buf[:size]), dtype=TICK_ROW)
        del self._buf[:size]
        self.rows += n
        return rows

    def finish(self) -> None:
        """Check that what is left is exactly the trailer. Raises :class:`ValueError`."""
        if bytes(self._buf) not in (b"", b"\xff\xff"):
            raise ValueError(f"binary COPY ended with {len(self._buf)} stray bytes")


def records_batch(
    records: Sequence[Any], columns: Sequence[str], series: Series, schema: pa.Schema
) -> pa.RecordBatch:
    """A record batch of asyncpg records with ``columns`` (candles)."""
    arrays: list[pa.Array] = []
    for i, c in enumerate(columns):
        values = [r[i] for r in records]
        field = schema.field(c)
        if c == "ts":
            ms = [int(v.timestamp() * 1000) for v in values]
            arrays.append(pa.array(ms, type=pa.int64()).cast(field.type))
        elif c in PRICES:
            arrays.append(_prices(np.array(values, dtype=np.int64), series))
        elif c.endswith("volume"):
            arrays.append(_volumes(np.array(values, dtype=np.float64)))  # None → NaN → null
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
