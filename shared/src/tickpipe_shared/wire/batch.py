"""Tick and candle batches (topics ``decoded-batches`` and ``validated-batches``): columnar binary
records.

A batch is one part of one unit; ``meta.unit.kind`` says whether it holds ticks (``ticks``) or
candles (``candles:<timeframe>:<side>``, :mod:`tickpipe_shared.kinds`). The encoding maps
straight onto numpy arrays (no per-row parsing): ::

    offset  size  content
    0       4     magic b"TPB1" (format version 1)
    4       4     header length H, uint32 little-endian
    8       H     header: UTF-8 JSON object (BatchMeta), then zero padding to a multiple of 8
    ...           each column in ``meta.columns`` order: rows × itemsize bytes, little-endian,
                  zero padded to a multiple of 8

Columns of a tick batch: ``ts_ms`` <i8, ``bid`` <i8, ``ask`` <i8 (points), ``bid_volume`` <f8,
``ask_volume`` <f8 and, after validation, ``flags`` <u2 (bit per validation rule).
Columns of a candle batch: ``ts_ms`` <i8 (candle start), ``open``, ``high``, ``low``, ``close``
<i8 (points), ``volume`` <f8, and ``flags`` <u2 after validation. A volume of NaN means "not
given by the source" (``volume_unit`` ``none``) and is stored as NULL.
A unit larger than the broker's message limit is split into ``part_count`` parts that the writer
stores one by one; every part carries the whole unit's identity.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tickpipe_shared.candles import CANDLE_COLUMNS, Candles
from tickpipe_shared.columns import TICK_COLUMNS, Ticks
from tickpipe_shared.kinds import Kind
from tickpipe_shared.units import Unit

MAGIC = b"TPB1"
_ALIGN = 8
_HEADER = struct.Struct("<4sI")
FLAGS_COLUMN = ("flags", "<u2")
#: Bytes per tick on the wire without and with the validator's flags column.
TICK_ROW_BYTES = sum(np.dtype(d).itemsize for _, d in TICK_COLUMNS)
VALIDATED_ROW_BYTES = TICK_ROW_BYTES + np.dtype(FLAGS_COLUMN[1]).itemsize
#: Bytes per candle on the wire without and with the flags column.
CANDLE_ROW_BYTES = sum(np.dtype(d).itemsize for _, d in CANDLE_COLUMNS)
VALIDATED_CANDLE_ROW_BYTES = CANDLE_ROW_BYTES + np.dtype(FLAGS_COLUMN[1]).itemsize


class BatchFormatError(ValueError):
    """A record value that is not a valid batch; the message says which part is wrong."""


@dataclass(frozen=True, slots=True)
class BatchMeta:
    """Everything about a batch except its columns.

    ``unit``: the unit this batch is a part of (in the JSON header its fields ``source``,
    ``instrument``, ``kind``, ``unit_start_ms`` and ``unit_end_ms`` come first; its kind is
    ``ticks`` or ``candles:<timeframe>:<side>``). Times are ms since epoch (UTC).
    ``price_scale``: decimals of a point (price = points × 10^-price_scale). ``volume_unit``:
    unit of the volume columns: ``millions`` (Dukascopy: millions of base units), ``units``
    (shares, coins, contracts), ``ticks`` (Polygon FX: the tick count) or ``none`` (the source
    gives no volume; the columns are NaN). ``quality``: validation rule → number of rows it hit
    (validated batches). ``source_code``: the instrument's code at the source (``EUR-USD``,
    ``frxEURUSD``, ``C:EURUSD``); ``asset_class``: ``fx``, ``metal``, ``index``, ``stock``,
    ``crypto``, ``commodity``, ``synthetic``, ``bond``, ``etf``, or ``""`` when unknown.
    ``suspect_empty``: the source answered "no data" although the trading schedule says the
    market was open, on every attempt (the fetcher's verdict, recorded in the ingest log).
    """

    unit: Unit
    part: int
    part_count: int
    rows: int
    price_scale: int
    payload_sha256: str
    request_id: str
    fetched_at_ms: int
    decoded_at_ms: int
    volume_unit: str = "millions"
    decoder_version: str = "1"
    columns: list[tuple[str, str]] = field(default_factory=lambda: list(TICK_COLUMNS))
    quality: dict[str, int] = field(default_factory=dict)
    validated_at_ms: int | None = None
    source_code: str = ""
    asset_class: str = ""
    suspect_empty: bool = False
    schema: int = 1

    @property
    def parsed_kind(self) -> Kind:
        """The unit's kind parsed. Raises :class:`~tickpipe_shared.kinds.KindError` when
        malformed."""
        return Kind.parse(self.unit.kind)

    @property
    def is_candles(self) -> bool:
        """True for a candle batch."""
        return self.unit.kind.startswith("candles:")

    def to_json(self) -> bytes:
        """The batch header: one flat JSON object, the unit's fields first."""
        data: dict[str, Any] = self.unit.to_fields("unit_start_ms", "unit_end_ms")
        data.update((f.name, getattr(self, f.name)) for f in fields(self) if f.name != "unit")
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, header: bytes) -> BatchMeta:
        """Parse a batch header. Raises :class:`BatchFormatError` when it is not one."""
        try:
            raw: dict[str, Any] = json.loads(header)
            raw["columns"] = [tuple(c) for c in raw["columns"]]
            unit = Unit.take_fields(raw, "unit_start_ms", "unit_end_ms")
            return cls(unit=unit, **raw)
        except (ValueError, TypeError, KeyError) as e:
            raise BatchFormatError(f"batch header is invalid: {e}") from None


@dataclass(frozen=True, slots=True)
class TickBatch:
    """One part of a unit of ticks: metadata, the ticks, and per-tick ``flags`` (uint16, shape
    ``(rows,)``) once validated (``None`` before)."""

    meta: BatchMeta
    ticks: Ticks
    flags: NDArray[np.uint16] | None = None

    def with_flags(
        self, flags: NDArray[np.uint16], quality: dict[str, int], at_ms: int
    ) -> TickBatch:
        """A validated copy: ``flags`` per tick and the quality report."""
        cols = [*TICK_COLUMNS, FLAGS_COLUMN]
        meta = replace(
            self.meta, columns=cols, quality=quality, validated_at_ms=at_ms, rows=len(self.ticks)
        )
        return TickBatch(meta, self.ticks, flags)


@dataclass(frozen=True, slots=True)
class CandleBatch:
    """One part of a unit of candles: metadata, the candles, and per-candle ``flags`` (uint16,
    shape ``(rows,)``) once validated (``None`` before)."""

    meta: BatchMeta
    candles: Candles
    flags: NDArray[np.uint16] | None = None

    def with_flags(
        self, flags: NDArray[np.uint16], quality: dict[str, int], at_ms: int
    ) -> CandleBatch:
        """A validated copy: ``flags`` per candle and the quality report."""
        cols = [*CANDLE_COLUMNS, FLAGS_COLUMN]
        meta = replace(
            self.meta, columns=cols, quality=quality, validated_at_ms=at_ms, rows=len(self.candles)
        )
        return CandleBatch(meta, self.candles, flags)


Batch = TickBatch | CandleBatch


def rows_of(batch: Batch) -> int:
    """Number of ticks or candles in ``batch``."""
    return len(batch.ticks) if isinstance(batch, TickBatch) else len(batch.candles)


def _pad(n: int) -> int:
    return (-n) % _ALIGN


def encode_batch(batch: Batch) -> bytes:
    """Serialise a batch. Raises :class:`ValueError` when ``meta.rows`` disagrees with the rows."""
    meta = batch.meta
    cols: Ticks | Candles = batch.ticks if isinstance(batch, TickBatch) else batch.candles
    if meta.rows != len(cols):
        raise ValueError(f"batch meta says {meta.rows} rows, columns have {len(cols)}")
    header = meta.to_json()
    parts = [_HEADER.pack(MAGIC, len(header)), header, b"\0" * _pad(_HEADER.size + len(header))]
    for name, dtype in meta.columns:
        arr = batch.flags if name == FLAGS_COLUMN[0] else getattr(cols, name)
        if arr is None:
            raise ValueError(f"batch declares column {name!r} but has none")
        data = np.ascontiguousarray(arr, dtype=np.dtype(dtype)).tobytes()
        parts += [data, b"\0" * _pad(len(data))]
    return b"".join(parts)


def decode_batch(value: bytes) -> Batch:
    """Parse a batch: a :class:`TickBatch` or, for a candle kind, a :class:`CandleBatch`;
    columns are zero-copy views on ``value``.

    Raises :class:`BatchFormatError` for a wrong magic, a bad header or truncated columns.
    """
    if len(value) < _HEADER.size:
        raise BatchFormatError(f"batch of {len(value)} bytes is shorter than its 8-byte preamble")
    magic, hlen = _HEADER.unpack_from(value)
    if magic != MAGIC:
        raise BatchFormatError(f"not a tick batch: magic {magic!r}, expected {MAGIC!r}")
    end = _HEADER.size + hlen
    if end > len(value):
        raise BatchFormatError(
            f"batch header of {hlen} bytes runs past the {len(value)}-byte record"
        )
    meta = BatchMeta.from_json(value[_HEADER.size : end])
    if meta.rows < 0:
        raise BatchFormatError(f"batch header says {meta.rows} rows")
    offset = end + _pad(end)
    arrays: dict[str, NDArray[Any]] = {}
    for name, dtype in meta.columns:
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise BatchFormatError(f"column {name!r} has an unknown dtype {dtype!r}") from None
        size = meta.rows * dt.itemsize
        if offset + size > len(value):
            raise BatchFormatError(
                f"column {name!r} needs {size} bytes at offset {offset}, record has {len(value)}"
            )
        arrays[name] = np.frombuffer(value, dtype=dt, count=meta.rows, offset=offset)
        offset += size + _pad(size)
    flags = arrays.get(FLAGS_COLUMN[0])
    if flags is not None and flags.dtype != np.dtype(FLAGS_COLUMN[1]):
        raise BatchFormatError(
            f"column 'flags' has dtype {flags.dtype}, expected {FLAGS_COLUMN[1]}"
        )
    candles = meta.is_candles
    expected = CANDLE_COLUMNS if candles else TICK_COLUMNS
    what = "candle" if candles else "tick"
    missing = [n for n, _ in expected if n not in arrays]
    if missing:
        raise BatchFormatError(f"{meta.unit.kind} batch lacks {what} columns {missing}")
    try:
        if candles:
            return CandleBatch(meta, Candles(*(arrays[n] for n, _ in CANDLE_COLUMNS)), flags)
        return TickBatch(meta, Ticks(*(arrays[n] for n, _ in TICK_COLUMNS)), flags)
    except ValueError as e:
        raise BatchFormatError(str(e)) from None


def split_rows(rows: int, row_bytes: int, max_bytes: int) -> list[slice]:
    """Row slices so that each part's columns fit in ``max_bytes`` (minus header room).

    Always at least one slice (an empty unit is one empty part).
    """
    per_part = max(1, (max_bytes - 4096) // row_bytes)
    if rows <= per_part:
        return [slice(0, rows)]
    return [slice(i, min(i + per_part, rows)) for i in range(0, rows, per_part)]
