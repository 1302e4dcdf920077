"""Writers of an export's data files: rows streamed into CSV or Parquet, each column formatted
for its kind (times in ms UTC, prices at the instrument's scale, volumes as floats)."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

#: Rows per Parquet row group (about 24 MB of tick columns before compression).
ROW_GROUP_ROWS = 500_000


def _is_volume(col: str) -> bool:
    return col == "volume" or col.endswith("_volume")


def _is_price(col: str) -> bool:
    if col in ("open", "high", "low", "close"):  # source candles
        return True
    return col.startswith(("bid", "ask", "mid")) and not _is_volume(col)


def _price_decimals(col: str, scale: int) -> int:
    # mid = (bid + ask) / 2 of two exact decimals at `scale`: exact at one more decimal.
    return scale + 1 if col.startswith("mid") else scale


def _csv_column(col: str, values: Sequence[Any], scale: int) -> list[str]:
    """One column of a chunk as CSV strings."""
    if col in ("ts", "bucket"):
        stamps = np.datetime_as_string(np.asarray(values, dtype=np.int64).astype("datetime64[ms]"),
                                       unit="ms")  # fmt: skip
        return [f"{s}Z" for s in stamps.tolist()]
    if _is_price(col):
        fmt = f"{{:.{_price_decimals(col, scale)}f}}"
        return [fmt.format(v) for v in values]
    if _is_volume(col):
        return ["" if v is None else repr(float(v)) for v in values]
    return [str(int(v)) for v in values]  # flags, tick_count


def _arrow_type(col: str) -> Any:
    if col in ("ts", "bucket"):
        return pa.timestamp("ms", tz="UTC")
    if col == "flags":
        return pa.int16()
    if col == "tick_count":
        return pa.int64()
    return pa.float64()


class Writer:
    """Streams chunks of rows into a (temporary) data file."""

    def __init__(
        self, path: Path, columns: Sequence[str], scale: int, meta: dict[str, str]
    ) -> None:
        self.path, self.columns, self.scale, self.meta = path, tuple(columns), scale, meta

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _CsvWriter(Writer):
    def __init__(
        self, path: Path, columns: Sequence[str], scale: int, meta: dict[str, str]
    ) -> None:
        super().__init__(path, columns, scale, meta)
        self._fh = path.open("w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._fh, lineterminator="\n")
        self._csv.writerow(self.columns)

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        cols = list(zip(*rows, strict=True))
        out = [_csv_column(c, v, self.scale) for c, v in zip(self.columns, cols, strict=True)]
        self._csv.writerows(zip(*out, strict=True))

    def close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()


class _ParquetWriter(Writer):
    def __init__(
        self, path: Path, columns: Sequence[str], scale: int, meta: dict[str, str]
    ) -> None:
        super().__init__(path, columns, scale, meta)
        fields = [pa.field(c, _arrow_type(c), nullable=_is_volume(c)) for c in columns]
        self.schema = pa.schema(fields, metadata={k.encode(): v.encode() for k, v in meta.items()})
        self._pq = pq.ParquetWriter(str(path), self.schema, compression="zstd")
        self._batches: list[Any] = []
        self._buffered = 0

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        cols = list(zip(*rows, strict=True))
        arrays = [
            pa.array(v, type=pa.int64()).cast(_arrow_type(c)) if c in ("ts", "bucket")
            else pa.array(v, type=_arrow_type(c))
            for c, v in zip(self.columns, cols, strict=True)
        ]  # fmt: skip
        self._batches.append(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        self._buffered += len(rows)
        if self._buffered >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._batches:
            table = pa.Table.from_batches(self._batches, schema=self.schema)
            self._pq.write_table(table, row_group_size=ROW_GROUP_ROWS)
            self._batches, self._buffered = [], 0

    def close(self) -> None:
        self._flush()
        self._pq.close()
        with self.path.open("rb+") as fh:
            os.fsync(fh.fileno())


WRITERS: dict[str, type[Writer]] = {"csv": _CsvWriter, "parquet": _ParquetWriter}
