"""``tickpipe export --verify``: every data file read back and checked against its sidecar."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from tickpipe_cli.export.layout import FORMATS, SCHEMA_VERSION, SIDECAR_KEYS, sha256_file


@dataclass(frozen=True)
class Check:
    """The verdict on one data file (``sidecar`` is ``None`` for a file without one)."""

    path: Path
    sidecar: Path | None
    ok: bool
    reasons: tuple[str, ...] = ()
    rows: int | None = None


@dataclass
class _Contents:
    rows: int = 0
    first: str | None = None
    last: str | None = None
    problems: list[str] = field(default_factory=list)

    def see(self, stamps: Iterable[str]) -> None:
        for ts in stamps:
            if self.last is not None and ts < self.last and len(self.problems) < 5:
                self.problems.append(f"rows out of time order at row {self.rows + 1} ({ts})")
            if self.first is None:
                self.first = ts
            self.last = ts
            self.rows += 1


def _read_csv(path: Path, columns: list[str]) -> _Contents:
    got = _Contents()
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header != columns:
            got.problems.append(f"header {header} is not the sidecar's columns {columns}")
        width = len(columns)

        def stamps() -> Iterable[str]:
            for n, row in enumerate(reader, start=1):
                if len(row) != width and len(got.problems) < 5:
                    got.problems.append(f"row {n} has {len(row)} fields, expected {width}")
                yield row[0] if row else ""

        got.see(stamps())
    return got


def _read_parquet(path: Path, columns: list[str], scale: Any) -> _Contents:
    got = _Contents()
    pf = pq.ParquetFile(str(path))
    names = list(pf.schema_arrow.names)
    if names != columns:
        got.problems.append(f"columns {names} are not the sidecar's columns {columns}")
    kv = pf.schema_arrow.metadata or {}
    file_scale = kv.get(b"tickpipe.price_scale", b"").decode()
    if file_scale != str(scale):
        got.problems.append(f"price scale in the file is {file_scale!r}, sidecar says {scale}")
    ts_col = names[0]
    for i in range(pf.num_row_groups):
        arr = pf.read_row_group(i, columns=[ts_col]).column(0)
        ms = arr.cast(pa.int64()).to_numpy()
        stamps = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms")
        got.see(f"{s}Z" for s in stamps.tolist())
    if got.rows != pf.metadata.num_rows:
        got.problems.append(f"row groups hold {got.rows} rows, footer says {pf.metadata.num_rows}")
    return got


def check_file(sidecar: Path) -> Check:
    """Check one sidecar against its data file."""
    data = sidecar.with_name(sidecar.name.removesuffix(".json"))
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return Check(data, sidecar, False, (f"sidecar unreadable: {e}",))
    if not isinstance(meta, dict) or any(k not in meta for k in SIDECAR_KEYS):
        missing = [k for k in SIDECAR_KEYS if not isinstance(meta, dict) or k not in meta]
        return Check(data, sidecar, False, (f"sidecar lacks {', '.join(missing)}",))
    if meta["schema_version"] != SCHEMA_VERSION:
        return Check(data, sidecar, False, (f"unknown schema_version {meta['schema_version']}",))
    if not data.is_file():
        return Check(data, sidecar, False, ("data file is missing",))
    reasons: list[str] = []
    digest = sha256_file(data)
    if digest != meta["sha256"]:
        reasons.append(f"sha256 mismatch: file {digest[:12]}…, sidecar {str(meta['sha256'])[:12]}…")
    try:
        if meta["format"] == "csv":
            got = _read_csv(data, list(meta["columns"]))
        else:
            got = _read_parquet(data, list(meta["columns"]), meta.get("price_scale"))
    except Exception as e:  # a corrupt file can fail in many ways: each is a verdict
        reasons.append(f"cannot read the file back: {type(e).__name__}: {e}")
        return Check(data, sidecar, False, tuple(reasons))
    reasons += got.problems
    if got.rows != meta["rows"]:
        reasons.append(f"{got.rows} rows in the file, sidecar says {meta['rows']}")
    for key, value in (("first_ts", got.first), ("last_ts", got.last)):
        if value != meta[key]:
            reasons.append(f"{key} in the file is {value}, sidecar says {meta[key]}")
    rng = meta.get("range") or {}
    if got.first is not None and rng.get("from") and got.first < rng["from"]:
        reasons.append(f"first row {got.first} is before the range start {rng['from']}")
    if got.last is not None and rng.get("to") and got.last >= rng["to"]:
        reasons.append(f"last row {got.last} is not before the range end {rng['to']}")
    return Check(data, sidecar, not reasons, tuple(reasons), got.rows)


def verify(root: Path) -> list[Check]:
    """Every sidecar under ``root`` checked against its data file, plus every data file that
    has no sidecar (an interrupted export, or a file put there by hand), in path order."""
    checks = [check_file(s) for s in sorted(root.rglob("*.json")) if _is_sidecar(s)]
    described = {c.path for c in checks}
    for fmt in FORMATS:
        for data in sorted(root.rglob(f"*.{fmt}")):
            if data not in described and not data.name.startswith("."):
                checks.append(Check(data, None, False, ("no sidecar",)))
    return sorted(checks, key=lambda c: str(c.path))


def _is_sidecar(path: Path) -> bool:
    return any(path.name.endswith(f".{fmt}.json") for fmt in FORMATS)
