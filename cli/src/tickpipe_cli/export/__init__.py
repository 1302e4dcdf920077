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

Modules: :mod:`.layout` (file names, sidecar constants), :mod:`.writers` (CSV and Parquet),
:mod:`.write` (the export), :mod:`.checks` (``--verify``), :mod:`.command` (the CLI command).
"""

from tickpipe_cli.export.checks import Check, check_file, verify
from tickpipe_cli.export.command import command
from tickpipe_cli.export.layout import (
    FORMATS,
    KINDS,
    SCHEMA_VERSION,
    ExportError,
    check_kind,
    data_path,
    iso_ms,
    kind_folder,
    sha256_file,
    sidecar_path,
)
from tickpipe_cli.export.write import ExportedFile, ExportResult, check_writable, export

__all__ = [
    "FORMATS",
    "KINDS",
    "SCHEMA_VERSION",
    "Check",
    "ExportError",
    "ExportResult",
    "ExportedFile",
    "check_file",
    "check_kind",
    "check_writable",
    "command",
    "data_path",
    "export",
    "iso_ms",
    "kind_folder",
    "sha256_file",
    "sidecar_path",
    "verify",
]
