"""Serializers: Arrow record batches → bytes of each answer format, chunk by chunk.

* ``json`` — one page (:func:`json_page`): ``{"meta": …, "data": [{…}], "next": cursor}``;
  prices as decimal strings (numbers with ``price_format=float``), ``ts`` ISO 8601 UTC.
* ``ndjson`` — one JSON object per line, the same row objects as ``json``'s ``data``.
* ``csv`` — a header line, then rows; prices as exact decimals, ``ts`` ISO 8601 UTC, empty
  fields for nulls.
* ``arrow`` — Arrow IPC stream (``application/vnd.apache.arrow.stream``), one record batch per
  chunk; the schema's metadata say the source and units.
* ``parquet`` — a Parquet file, one row group per chunk (the footer comes last).

Every streamed format converts whole batches with Arrow compute kernels: no Python per row.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.csv as pacsv  # type: ignore[import-untyped]
import pyarrow.ipc as ipc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

Format = Literal["json", "ndjson", "csv", "arrow", "parquet"]
FORMATS: tuple[Format, ...] = ("json", "ndjson", "csv", "arrow", "parquet")
STREAMING: tuple[Format, ...] = ("ndjson", "csv", "arrow", "parquet")
MEDIA_TYPES: dict[Format, str] = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
}
_ACCEPT: dict[str, Format] = {
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "text/csv": "csv",
    "application/vnd.apache.arrow.stream": "arrow",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
}
#: Rough bytes per row and column of each format, for ``count_only`` estimates.
BYTES_PER_VALUE: dict[Format, float] = {
    "json": 16.0,
    "ndjson": 16.0,
    "csv": 9.0,
    "arrow": 9.0,
    "parquet": 4.0,
}


def negotiate(format_: str | None, accept: str | None) -> Format | None:
    """The answer format: the ``format`` parameter, else the first known media type of
    ``Accept``, else ``json``. ``None`` for an unknown ``format`` value."""
    if format_:
        f = format_.lower()
        return f if f in FORMATS else None
    for part in (accept or "").split(","):
        media = part.split(";")[0].strip().lower()
        if media in _ACCEPT:
            return _ACCEPT[media]
    return "json"


# --------------------------------------------------------------------------- text columns


def _text_columns(batch: pa.RecordBatch) -> list[pa.Array]:
    """Each column as strings (nulls stay null): ``ts`` ISO 8601 UTC, decimals exact."""
    out = []
    for name, col in zip(batch.schema.names, batch.columns, strict=True):
        if pa.types.is_timestamp(col.type):
            out.append(pc.strftime(col, format="%Y-%m-%dT%H:%M:%SZ"))
        else:
            out.append(col.cast(pa.string()))
        del name
    return out


def _json_values(batch: pa.RecordBatch) -> list[pa.Array]:
    """Each column as JSON text: strings quoted (timestamps, decimals), numbers bare, null."""
    out = []
    for col, text in zip(batch.columns, _text_columns(batch), strict=True):
        if pa.types.is_timestamp(col.type) or pa.types.is_decimal(col.type):
            text = pc.binary_join_element_wise('"', text, '"', "")
        elif pa.types.is_floating(col.type):
            finite = pc.is_finite(col)
            text = pc.if_else(finite, text, pa.scalar(None, pa.string()))
        out.append(pc.fill_null(text, "null"))
    return out


def ndjson_lines(batch: pa.RecordBatch) -> bytes:
    """The rows of ``batch`` as NDJSON (each line ends with ``\\n``)."""
    if batch.num_rows == 0:
        return b""
    parts: list[Any] = []
    for i, (name, values) in enumerate(zip(batch.schema.names, _json_values(batch), strict=True)):
        parts.append(("{" if i == 0 else ",") + json.dumps(name) + ":")
        parts.append(values)
    parts.append("}\n")
    return _concat(pc.binary_join_element_wise(*parts, ""))


def _concat(strings: pa.Array) -> bytes:
    """The concatenation of the values of a string array without nulls, read from its data
    buffer between the first and the last offset."""
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int32)
    start, end = int(offsets[strings.offset]), int(offsets[strings.offset + len(strings)])
    data = strings.buffers()[2]
    return b"" if data is None else data.to_pybytes()[start:end]


# --------------------------------------------------------------------------- streams


class _Sink:
    """A write-only file whose written bytes are taken out after each batch."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> int:
        b = bytes(data)
        self.parts.append(b)
        return len(b)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def _csv_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(_text_columns(batch), names=batch.schema.names)


async def stream(
    fmt: Format, schema: pa.Schema, batches: AsyncIterator[pa.RecordBatch]
) -> AsyncIterator[bytes]:
    """The bytes of ``batches`` (all of ``schema``) in streaming format ``fmt``."""
    if fmt == "ndjson":
        async for b in batches:
            yield ndjson_lines(b)
        return
    sink = _Sink()
    if fmt == "csv":
        text_schema = pa.schema([pa.field(n, pa.string()) for n in schema.names])
        opts = pacsv.WriteOptions(include_header=True, quoting_style="needed")
        with pacsv.CSVWriter(sink, text_schema, write_options=opts) as w:
            yield sink.take() or (",".join(schema.names) + "\n").encode()
            async for b in batches:
                w.write_batch(_csv_batch(b))
                yield sink.take()
        yield sink.take()
        return
    if fmt == "arrow":
        with ipc.new_stream(pa.PythonFile(sink, mode="w"), schema) as w:
            yield sink.take()
            async for b in batches:
                w.write_batch(b)
                yield sink.take()
        yield sink.take()
        return
    if fmt == "parquet":
        with pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, compression="zstd") as pw:
            async for b in batches:
                pw.write_batch(b)
                yield sink.take()
        yield sink.take()
        return
    raise ValueError(f"{fmt} is not a streaming format")


# --------------------------------------------------------------------------- json


def rows_as_objects(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """The rows of ``batch`` as JSON-ready dicts: ``ts`` ISO 8601 strings, decimals as exact
    strings, floats as numbers, nulls as ``None``."""
    if batch.num_rows == 0:
        return []
    cols: list[list[Any]] = []
    for col, text in zip(batch.columns, _text_columns(batch), strict=True):
        textual = pa.types.is_timestamp(col.type) or pa.types.is_decimal(col.type)
        cols.append((text if textual else col).to_pylist())
    names = batch.schema.names
    return [dict(zip(names, vals, strict=True)) for vals in zip(*cols, strict=True)]


def json_page(meta: dict[str, Any], batch: pa.RecordBatch, next_cursor: str | None) -> bytes:
    """A json answer: ``meta`` members, then ``data`` (the rows) and ``next``."""
    body = {**meta, "data": rows_as_objects(batch), "next": next_cursor}
    return json.dumps(body, separators=(",", ":")).encode()


def table_of_records(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Plain dict rows (coverage, instruments) as an Arrow table."""
    return pa.Table.from_pylist(list(rows))


async def stream_records(fmt: Format, rows: Sequence[dict[str, Any]]) -> AsyncIterator[bytes]:
    """Plain dict rows in a streaming format (list values joined by spaces for csv)."""
    table = table_of_records(rows)
    if fmt == "csv":
        flat = {}
        for name in table.column_names:
            col = table.column(name)
            t = col.type
            if pa.types.is_list(t) or pa.types.is_struct(t) or pa.types.is_map(t):
                flat[name] = pa.array([_flat(v) for v in col.to_pylist()], type=pa.string())
            else:
                flat[name] = col
        table = pa.table(flat)

    async def batches() -> AsyncIterator[pa.RecordBatch]:
        for b in table.to_batches():
            yield b

    if fmt == "ndjson":
        for r in rows:
            yield (json.dumps(r, separators=(",", ":"), default=str) + "\n").encode()
        return
    async for chunk in stream(fmt, table.schema, batches()):
        yield chunk


def _flat(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return json.dumps(value, separators=(",", ":"), default=str)
