"""PostgreSQL binary COPY built straight from numpy columns (no per-row Python objects).

Format: https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4 — a signature
and header, then per row a big-endian int16 field count and per field an int32 length followed
by the value in the type's binary send format (a NULL is the length -1 and no value), then an
int16 -1 trailer. We build one packed structured numpy array per batch whose fields are exactly
that layout, so encoding N rows is a handful of vectorised assignments; NULLs (NaN volumes) are
cut out of the packed bytes with one boolean mask, only when a batch has any.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.db.ohlcv import SOURCE_CANDLE_COLUMNS
from tickpipe_shared.kinds import Kind
from tickpipe_shared.wire.batch import CandleBatch, TickBatch

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
#: Columns written to ``ticks``, in COPY order.
TICK_COPY_COLUMNS = (
    "instrument",
    "ts",
    "bid_points",
    "ask_points",
    "bid_volume",
    "ask_volume",
    "flags",
)
#: Columns written to ``candles``, in COPY order: the table's, as the schema module has them.
CANDLE_COPY_COLUMNS = SOURCE_CANDLE_COLUMNS
#: PostgreSQL timestamps count microseconds from 2000-01-01T00:00:00Z.
PG_EPOCH_MS = 946_684_800_000


def _row_dtype(fields: Sequence[tuple[str, str]]) -> np.dtype[np.void]:
    """The packed layout of one row: the field count, then per field its length and value."""
    layout: list[tuple[str, str]] = [("nfields", ">i2")]
    for name, fmt in fields:
        layout += [(f"{name}_len", ">i4"), (name, fmt)]
    return np.dtype(layout)


def _new_rows(fields: Sequence[tuple[str, str]], n: int) -> NDArray[np.void]:
    """``n`` rows of ``fields`` with the field count and every length filled in."""
    dtype = _row_dtype(fields)
    rows = np.empty(n, dtype=dtype)
    rows["nfields"] = len(fields)
    for name, _ in fields:
        rows[f"{name}_len"] = dtype.fields[name][0].itemsize  # type: ignore[index]
    return rows


def _text(value: str, what: str) -> tuple[bytes, str]:
    """A text field's bytes and its numpy format (fixed width). ASCII only: names and codes."""
    data = value.encode("ascii")
    if not data:
        raise ValueError(f"{what} is empty")
    return data, f"S{len(data)}"


def _packed(rows: NDArray[np.void], nulls: Mapping[str, NDArray[np.bool_]]) -> bytes:
    """``rows`` as COPY bytes, with the fields flagged in ``nulls`` (per row) written as NULL:
    length -1 and their value bytes left out."""
    nulls = {name: mask for name, mask in nulls.items() if mask.any()}
    if not nulls:
        return rows.tobytes()
    dtype = rows.dtype
    keep = np.ones((len(rows), dtype.itemsize), dtype=np.bool_)
    for name, mask in nulls.items():
        rows[f"{name}_len"][mask] = -1
        field_dtype, offset = dtype.fields[name][:2]  # type: ignore[index]
        keep[mask, offset : offset + field_dtype.itemsize] = False
    # Row-major boolean selection keeps the rows, and the fields within them, in order.
    return rows.view(np.uint8).reshape(len(rows), dtype.itemsize)[keep].tobytes()


def _prices(points: NDArray[np.int64], scale: int) -> NDArray[np.float64]:
    # Division by an exact power of ten is correctly rounded; multiplying by 10^-scale is not.
    return points / float(10**scale)


def _check_scale(scale: int, where: str) -> None:
    if scale < 0:
        raise ValueError(f"{where}: price_scale {scale} is negative (unknown scale)")


def _flags(flags: NDArray[np.uint16] | None) -> NDArray[np.int16] | int:
    return 0 if flags is None else flags.astype(np.int16)


def encode_tick_rows(batch: TickBatch) -> bytes:
    """The binary COPY rows (no signature, no trailer) of one batch's ticks, for
    :data:`TICK_COPY_COLUMNS`.

    ``ts`` becomes timestamptz (µs since 2000-01-01), bid and ask their int64 points as int8
    (``price = points / 10^price_scale``, the scale recorded in ``instruments``), volumes
    float8 with NaN written as NULL (Deriv ticks have no volume), flags int2 (0 when the batch
    was not validated). Raises :class:`ValueError` for an instrument name that is not ASCII or a
    negative price scale.
    """
    meta, ticks = batch.meta, batch.ticks
    name, name_fmt = _text(meta.unit.instrument, "instrument")
    _check_scale(meta.price_scale, meta.unit.key)
    rows = _new_rows(
        [("instrument", name_fmt), ("ts", ">i8"), ("bid_points", ">i8"), ("ask_points", ">i8"),
         ("bid_volume", ">f8"), ("ask_volume", ">f8"), ("flags", ">i2")],
        len(ticks),
    )  # fmt: skip
    rows["instrument"] = name
    rows["ts"] = (ticks.ts_ms - PG_EPOCH_MS) * 1000
    rows["bid_points"] = ticks.bid
    rows["ask_points"] = ticks.ask
    rows["bid_volume"] = ticks.bid_volume
    rows["ask_volume"] = ticks.ask_volume
    rows["flags"] = _flags(batch.flags)
    nulls = {"bid_volume": np.isnan(ticks.bid_volume), "ask_volume": np.isnan(ticks.ask_volume)}
    return _packed(rows, nulls)


def encode_candle_rows(batch: CandleBatch) -> bytes:
    """The binary COPY rows (no signature, no trailer) of one batch's candles, for
    :data:`CANDLE_COPY_COLUMNS`.

    ``timeframe`` and ``side`` come from the batch's kind (``candles:<timeframe>:<side>``),
    ``ts`` (the candle start) becomes timestamptz, open/high/low/close
    ``points / 10^price_scale`` as float8 (exact decimals, like ticks), ``volume`` float8 with
    NaN written as NULL (the source gives no volume), flags int2 (0 when not validated).
    Raises :class:`ValueError` for a kind that is not a candle kind, a non-ASCII instrument or a
    negative price scale.
    """
    meta, candles = batch.meta, batch.candles
    kind = Kind.parse(meta.unit.kind)
    if not kind.is_candles:
        raise ValueError(f"{meta.unit.key}: kind {meta.unit.kind!r} is not a candle kind")
    name, name_fmt = _text(meta.unit.instrument, "instrument")
    timeframe, tf_fmt = _text(str(kind.timeframe), "timeframe")
    side, side_fmt = _text(str(kind.side), "side")
    _check_scale(meta.price_scale, meta.unit.key)
    rows = _new_rows(
        [("instrument", name_fmt), ("timeframe", tf_fmt), ("side", side_fmt), ("ts", ">i8"),
         ("open", ">f8"), ("high", ">f8"), ("low", ">f8"), ("close", ">f8"), ("volume", ">f8"),
         ("flags", ">i2")],
        len(candles),
    )  # fmt: skip
    rows["instrument"] = name
    rows["timeframe"] = timeframe
    rows["side"] = side
    rows["ts"] = (candles.ts_ms - PG_EPOCH_MS) * 1000
    for column in ("open", "high", "low", "close"):
        rows[column] = _prices(getattr(candles, column), meta.price_scale)
    rows["volume"] = candles.volume
    rows["flags"] = _flags(batch.flags)
    return _packed(rows, {"volume": np.isnan(candles.volume)})
