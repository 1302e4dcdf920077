"""Writing an export: one file per month, streamed from a server-side cursor, each renamed into
place before its sidecar (see the package docstring for the order that keeps sidecars true)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
from tickpipe_shared.db.export import (
    DEFAULT_CHUNK_ROWS,
    Month,
    export_args,
    export_columns,
    export_sql,
    months,
    stream_rows,
)
from tickpipe_shared.db.ledger import sources
from tickpipe_shared.db.ohlcv import price_scale

from tickpipe_cli.export.layout import (
    FORMATS,
    SCHEMA_VERSION,
    ExportError,
    check_kind,
    data_path,
    fsync_dir,
    iso_ms,
    sha256_file,
    sidecar_path,
    temp_for,
    what_of,
)
from tickpipe_cli.export.writers import WRITERS, Writer


def tickpipe_version() -> str:
    """The installed tickpipe-cli version, recorded in every sidecar."""
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
    """The files an export wrote and the months that had no rows (no file)."""

    files: list[ExportedFile] = field(default_factory=list)
    empty_months: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Rows in all files."""
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
        what = what_of(kind, timeframe)
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
    tmp = temp_for(path)
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
    writer: Writer | None = None
    try:
        try:
            async for chunk in stream_rows(
                conn, sql, instrument, month.start, month.end, *args, chunk_rows=chunk_rows
            ):
                if writer is None:  # directories only for months that have rows
                    path.parent.mkdir(parents=True, exist_ok=True)
                    writer = WRITERS[fmt](tmp, columns, scale, file_meta)
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
        fsync_dir(path.parent)
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
    stmp = temp_for(side)
    try:
        stmp.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
        with stmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(stmp, side)
        fsync_dir(side.parent)
    except OSError as e:
        stmp.unlink(missing_ok=True)
        raise ExportError(f"cannot write {side}: {e.strerror or e}") from None
    return ExportedFile(path, sidecar)
