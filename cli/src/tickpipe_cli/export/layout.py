"""Where an export's files go and what they are called, and the file operations every file of an
export goes through (checksum, temporary name, directory fsync)."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

from tickpipe_shared.db.export import Month, is_source_candles
from tickpipe_shared.db.ohlcv import TIMEFRAMES
from tickpipe_shared.kinds import Kind, KindError
from tickpipe_shared.units import ms_to_dt

#: Version of the sidecar layout (and of the file columns it lists).
SCHEMA_VERSION = 1
#: Export kinds besides the source-candle kinds ``candles:<timeframe>:<side>``.
KINDS = ("ticks", "candles")
FORMATS = ("csv", "parquet")
SIDECAR_KEYS = ("schema_version", "rows", "first_ts", "last_ts", "sha256", "columns", "format")


class ExportError(Exception):
    """An export that cannot run: the message says why (shown as is)."""


def iso_ms(value: datetime | int) -> str:
    """``2019-02-04T10:00:00.123Z`` from an aware datetime or epoch milliseconds."""
    dt = ms_to_dt(value) if isinstance(value, int) else value
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sha256_file(path: Path) -> str:
    """SHA-256 of the file, lower-case hex (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a rename in the directory durable (best effort: some file systems refuse)."""
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


def temp_for(path: Path) -> Path:
    """The hidden temporary name ``path`` is written under before it is renamed into place."""
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


def what_of(kind: str, timeframe: str | None) -> str:
    """What an export of ``kind`` holds, in words: ``ticks``, ``1h candles``, ``1m bid source
    candles``."""
    if kind == "ticks":
        return "ticks"
    if is_source_candles(kind):
        k = Kind.parse(kind)
        return f"{k.timeframe} {k.side} source candles"
    return f"{timeframe} candles"


def sidecar_path(data: Path) -> Path:
    """The sidecar of a data file: its name plus ``.json``."""
    return data.with_name(data.name + ".json")
