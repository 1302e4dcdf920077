"""``tickpipe export``: ticks, OHLCV candles or source candles to CSV or Parquet files, one per
month, each with a JSON sidecar that ``tickpipe export --verify`` checks.

Kinds: ``ticks``; ``candles`` (OHLCV over ticks at ``--timeframe``); ``candles:<tf>:<side>``
(source candles, table ``candles``). Layout: ``DIR/<INSTRUMENT>/<folder>/<YYYY>/<YYYY-MM>.<csv|
parquet>`` plus ``<YYYY-MM>.<csv|parquet>.json``, the folder being ``ticks``, ``candles-<tf>``
or ``candles-<tf>-<side>``. The data file is written to a temporary file and renamed into
place before its sidecar (also renamed into place), and an existing sidecar is removed before the
data file it describes is replaced: a sidecar never describes a partial or different file. An
interrupted export leaves at most a data file without a sidecar, which ``--verify`` reports.
See docs/export.md.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import typer
from rich.markup import escape
from tickpipe_shared.config import get_settings
from tickpipe_shared.db.export import (
    DEFAULT_CHUNK_ROWS,
    Month,
    export_args,
    export_columns,
    export_sql,
    is_source_candles,
    months,
    sources,
    stream_rows,
)
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.db.ohlcv import TIMEFRAMES, price_scale
from tickpipe_shared.kinds import Kind, KindError

from tickpipe_cli.db import connect, stored_name
from tickpipe_cli.output import console, err
from tickpipe_cli.times import parse_time

#: Version of the sidecar layout (and of the file columns it lists).
SCHEMA_VERSION = 1
#: Export kinds besides the source-candle kinds ``candles:<timeframe>:<side>``.
KINDS = ("ticks", "candles")
FORMATS = ("csv", "parquet")
#: Rows per Parquet row group (about 24 MB of tick columns before compression).
ROW_GROUP_ROWS = 500_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SIDECAR_KEYS = ("schema_version", "rows", "first_ts", "last_ts", "sha256", "columns", "format")


class ExportError(Exception):
    """An export that cannot run: the message says why (shown as is)."""


# --------------------------------------------------------------------------- formatting


def iso_ms(value: datetime | int) -> str:
    """``2019-02-04T10:00:00.123Z`` from an aware datetime or epoch milliseconds."""
    dt = _EPOCH + timedelta(milliseconds=value) if isinstance(value, int) else value
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


# --------------------------------------------------------------------------- writers


class _Writer:
    """Streams chunks of rows into a (temporary) data file."""

    def __init__(
        self, path: Path, columns: Sequence[str], scale: int, meta: dict[str, str]
    ) -> None:
        self.path, self.columns, self.scale, self.meta = path, tuple(columns), scale, meta

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _CsvWriter(_Writer):
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


class _ParquetWriter(_Writer):
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


_WRITERS: dict[str, type[_Writer]] = {"csv": _CsvWriter, "parquet": _ParquetWriter}


# --------------------------------------------------------------------------- files


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def kind_folder(kind: str, timeframe: str | None) -> str:
    """``ticks``, ``candles-<timeframe>`` (OHLCV) or ``candles-<timeframe>-<side>`` (source
    candles of kind ``candles:<timeframe>:<side>``)."""
    if kind == "ticks":
        return kind
    if is_source_candles(kind):
        return kind.replace(":", "-")
    return f"{kind}-{timeframe}"


def data_path(
    out: Path, instrument: str, kind: str, timeframe: str | None, fmt: str, month: Month
) -> Path:
    """``out/<INSTRUMENT>/<folder>/<YYYY>/<YYYY-MM>.<fmt>`` (folder: :func:`kind_folder`)."""
    folder = kind_folder(kind, timeframe)
    return out / instrument / folder / f"{month.year:04d}" / f"{month.label}.{fmt}"


def check_kind(kind: str, timeframe: str | None) -> tuple[str, str | None, str | None]:
    """``(kind, timeframe, side)`` of an export, in their stored spelling: ``ticks`` (no
    timeframe), ``candles`` at one of :data:`TIMEFRAMES`, or a source-candle kind
    ``candles:<timeframe>:<side>`` (its timeframe and side; no separate ``timeframe``). Raises
    :class:`ExportError` saying what is wrong."""
    if kind == "ticks":
        return kind, None, None
    if kind == "candles":
        if timeframe not in TIMEFRAMES:
            raise ExportError(
                f"unknown timeframe {timeframe!r}: expected one of {', '.join(TIMEFRAMES)}"
            )
        return kind, timeframe, None
    if is_source_candles(kind):
        try:
            k = Kind.parse(kind)
        except KindError as e:
            raise ExportError(str(e)) from None
        if timeframe is not None and timeframe != str(k.timeframe):
            raise ExportError(f"kind {kind!r} has its timeframe: drop timeframe {timeframe!r}")
        return str(k), str(k.timeframe), k.side
    raise ExportError(
        f"unknown kind {kind!r}: expected ticks, candles or candles:<timeframe>:<side>"
    )


def _what(kind: str, timeframe: str | None) -> str:
    if kind == "ticks":
        return "ticks"
    if is_source_candles(kind):
        k = Kind.parse(kind)
        return f"{k.timeframe} {k.side} source candles"
    return f"{timeframe} candles"


def sidecar_path(data: Path) -> Path:
    return data.with_name(data.name + ".json")


def tickpipe_version() -> str:
    try:
        return metadata.version("tickpipe-cli")
    except metadata.PackageNotFoundError:  # pragma: no cover - always installed in the workspace
        return "unknown"


@dataclass
class ExportedFile:
    """One data file written (and its sidecar's content)."""

    path: Path
    sidecar: dict[str, Any]


@dataclass
class ExportResult:
    files: list[ExportedFile] = field(default_factory=list)
    empty_months: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(int(f.sidecar["rows"]) for f in self.files)


def check_writable(out: Path) -> None:
    """Create ``out`` if needed and prove a file can be written there, else :class:`ExportError`."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".tickpipe-export-probe.{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ExportError(f"cannot write to {out}: {e.strerror or e}") from None


async def export(
    conn: asyncpg.Connection,
    instrument: str,
    from_: datetime,
    to: datetime,
    out: Path,
    *,
    kind: str = "ticks",
    timeframe: str | None = None,
    fmt: str = "csv",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: Callable[[str, ExportedFile | None], None] | None = None,
) -> ExportResult:
    """Export ``instrument``'s ticks, OHLCV candles (``kind`` ``candles`` at ``timeframe``) or
    source candles (``kind`` ``candles:<timeframe>:<side>``) in ``[from_, to)`` to ``out``, one
    file per month, each streamed from a server-side cursor.

    Months without rows get no file. Raises :class:`ExportError` for an unknown kind or
    timeframe, an unknown instrument (nothing stored), an empty range, a range without data and
    an unwritable ``out``.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if kind == "ticks":
        timeframe = None
    kind, timeframe, _ = check_kind(kind, timeframe)
    if to <= from_:
        raise ExportError(
            f"empty range: --to ({iso_ms(to)}) must be after --from ({iso_ms(from_)})"
        )
    scale = await price_scale(conn, instrument)
    if scale is None:
        raise ExportError(f"unknown instrument {instrument}: nothing is stored for it")
    check_writable(out)
    columns = export_columns(kind)
    sql = export_sql(kind, timeframe)
    result = ExportResult()
    for month in months(from_, to):
        exported = await _export_month(
            conn, instrument, kind, timeframe, fmt, month, out, scale, columns, sql, chunk_rows
        )
        if exported is None:
            result.empty_months.append(month.label)
        else:
            result.files.append(exported)
        if progress is not None:
            progress(month.label, exported)
    if not result.files:
        what = _what(kind, timeframe)
        raise ExportError(
            f"no {what} of {instrument} in [{iso_ms(from_)}, {iso_ms(to)}): nothing exported"
        )
    return result


async def _export_month(
    conn: asyncpg.Connection,
    instrument: str,
    kind: str,
    timeframe: str | None,
    fmt: str,
    month: Month,
    out: Path,
    scale: int,
    columns: tuple[str, ...],
    sql: str,
    chunk_rows: int,
) -> ExportedFile | None:
    path = data_path(out, instrument, kind, timeframe, fmt, month)
    side = sidecar_path(path)
    args = export_args(kind)
    candle_side = args[1] if args else None
    tmp = _temp_for(path)
    file_meta = {
        "tickpipe.schema_version": str(SCHEMA_VERSION),
        "tickpipe.instrument": instrument,
        "tickpipe.kind": kind,
        "tickpipe.timeframe": timeframe or "",
        "tickpipe.side": candle_side or "",
        "tickpipe.price_scale": str(scale),
        "tickpipe.mid_price_scale": str(scale + 1),
    }
    rows = 0
    first: int | None = None
    last: int | None = None
    writer: _Writer | None = None
    try:
        try:
            async for chunk in stream_rows(
                conn, sql, instrument, month.start, month.end, *args, chunk_rows=chunk_rows
            ):
                if writer is None:  # directories only for months that have rows
                    path.parent.mkdir(parents=True, exist_ok=True)
                    writer = _WRITERS[fmt](tmp, columns, scale, file_meta)
                    first = int(chunk[0][0])
                last = int(chunk[-1][0])
                rows += len(chunk)
                writer.write(chunk)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            return None
        digest = sha256_file(tmp)
        # The old sidecar goes first: it must never describe the new (or a partial) file.
        side.unlink(missing_ok=True)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    assert first is not None and last is not None
    sidecar: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "file": path.name,
        "instrument": instrument,
        "kind": kind,
        "timeframe": timeframe,
        "side": candle_side,
        "format": fmt,
        "rows": rows,
        "first_ts": iso_ms(first),
        "last_ts": iso_ms(last),
        "range": {"from": iso_ms(month.start), "to": iso_ms(month.end)},
        "sha256": digest,
        "columns": list(columns),
        "price_scale": scale,
        "source": await sources(conn, instrument, month.start, month.end, kind),
        "created_at": iso_ms(datetime.now(UTC)),
        "tickpipe_version": tickpipe_version(),
    }
    stmp = _temp_for(side)
    try:
        stmp.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
        with stmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(stmp, side)
        _fsync_dir(side.parent)
    except OSError as e:
        stmp.unlink(missing_ok=True)
        raise ExportError(f"cannot write {side}: {e.strerror or e}") from None
    return ExportedFile(path, sidecar)


# --------------------------------------------------------------------------- verify


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
    if not isinstance(meta, dict) or any(k not in meta for k in _SIDECAR_KEYS):
        missing = [k for k in _SIDECAR_KEYS if not isinstance(meta, dict) or k not in meta]
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


# --------------------------------------------------------------------------- command


def _run_verify(root: Path) -> None:
    if not root.is_dir():
        err.print(f"[red]{escape(str(root))} is not a directory[/red]")
        raise typer.Exit(2)
    checks = verify(root)
    if not checks:
        err.print(
            f"[red]no exported files (sidecars or data files) under {escape(str(root))}[/red]"
        )
        raise typer.Exit(1)
    for c in checks:
        rel = escape(str(c.path.relative_to(root)))
        if c.ok:
            console.print(f"[green]OK[/green]   {rel} ({c.rows:,} rows)")
        else:
            console.print(f"[red]FAIL[/red] {rel}: {escape('; '.join(c.reasons))}")
    failed = sum(not c.ok for c in checks)
    summary = f"{len(checks) - failed} OK, {failed} failed"
    if failed:
        console.print(f"[red]{summary}[/red]")
        raise typer.Exit(1)
    console.print(f"[green]{summary}[/green]")


def command(
    instrument: Annotated[
        str | None, typer.Argument(help="Instrument, e.g. EURUSD (not with --verify)")
    ] = None,
    from_: Annotated[str | None, typer.Option("--from", help="Start, inclusive (UTC)")] = None,
    to: Annotated[str | None, typer.Option("--to", help="End, exclusive (UTC)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output directory")] = None,
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="ticks, candles (OHLCV over ticks) or candles:<timeframe>:<side> (source "
            "candles as stored, e.g. candles:1m:bid)",
        ),
    ] = "ticks",
    timeframe: Annotated[
        str | None,
        typer.Option(
            "--timeframe", "-t", help=f"--kind candles only: {', '.join(TIMEFRAMES)} (1h)"
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
    verify_dir: Annotated[
        Path | None,
        typer.Option("--verify", help="Check every file under DIR against its sidecar instead"),
    ] = None,
) -> None:
    """Export INSTRUMENT's ticks, OHLCV candles or source candles in [--from, --to) to --out,
    one CSV or Parquet file per month with a JSON sidecar; or check an export with --verify DIR.

    Layout: DIR/INSTRUMENT/FOLDER/YYYY/YYYY-MM.FORMAT and YYYY-MM.FORMAT.json, FOLDER being
    ticks, candles-TIMEFRAME or candles-TIMEFRAME-SIDE (source candles).
    """
    if verify_dir is not None:
        given = [n for n, v in (("INSTRUMENT", instrument), ("--from", from_), ("--to", to),
                                ("--out", out)) if v is not None]  # fmt: skip
        if given:
            raise typer.BadParameter(f"--verify takes no {', '.join(given)}")
        _run_verify(verify_dir)
        return
    missing = [n for n, v in (("INSTRUMENT", instrument), ("--from", from_), ("--to", to),
                              ("--out", out)) if v is None]  # fmt: skip
    if missing:
        raise typer.BadParameter(f"missing {', '.join(missing)} (or use --verify DIR)")
    assert instrument is not None and from_ is not None and to is not None and out is not None
    if kind not in KINDS and not is_source_candles(kind):
        raise typer.BadParameter(
            f"expected one of {', '.join(KINDS)} or candles:<timeframe>:<side>",
            param_hint="--kind",
        )
    if fmt not in FORMATS:
        raise typer.BadParameter(f"expected one of {', '.join(FORMATS)}", param_hint="--format")
    if kind != "candles" and timeframe is not None:
        raise typer.BadParameter("only with --kind candles", param_hint="--timeframe")
    if kind == "candles":
        timeframe = timeframe or "1h"
        if timeframe not in TIMEFRAMES:
            raise typer.BadParameter(
                f"{timeframe!r} is not a timeframe: expected one of {', '.join(TIMEFRAMES)}",
                param_hint="--timeframe",
            )
    if is_source_candles(kind):
        try:
            kind = str(Kind.parse(kind))
        except KindError as e:
            raise typer.BadParameter(str(e), param_hint="--kind") from None
    start, end = parse_time(from_, "--from"), parse_time(to, "--to")
    if end <= start:
        raise typer.BadParameter(f"--to ({to}) must be after --from ({from_})")
    names: list[str] = []

    def progress(label: str, f: ExportedFile | None) -> None:
        if f is None:
            console.print(f"  {label}  no rows, no file")
        else:
            console.print(f"  {label}  {f.sidecar['rows']:>10,} rows  {escape(str(f.path))}")

    async def run() -> ExportResult:
        conn = await connect(get_settings())
        try:
            await migrate(conn)
            names.append(await stored_name(conn, instrument))
            return await export(conn, names[0], start, end, out, kind=kind, timeframe=timeframe,
                                fmt=fmt, progress=progress)  # fmt: skip
        finally:
            await conn.close()

    try:
        result = asyncio.run(run())
    except ExportError as e:
        err.print(f"[red]{escape(str(e))}[/red]")
        raise typer.Exit(1) from None
    what = _what(kind, timeframe)
    console.print(
        f"exported {result.rows:,} {what} of {names[0]} into {len(result.files)} {fmt} file(s) "
        f"under {escape(str(out))}"
    )
    sys.stdout.flush()
