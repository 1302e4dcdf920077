"""The ``tickpipe export`` command: arguments, progress and the ``--verify`` report."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from tickpipe_shared.config import get_settings
from tickpipe_shared.db.export import is_source_candles
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.db.ohlcv import TIMEFRAMES
from tickpipe_shared.kinds import Kind, KindError

from tickpipe_cli.db import connect, stored_name
from tickpipe_cli.export.checks import verify
from tickpipe_cli.export.layout import FORMATS, KINDS, ExportError, what_of
from tickpipe_cli.export.write import ExportedFile, ExportResult, export
from tickpipe_cli.output import console, err
from tickpipe_cli.times import parse_time


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
    what = what_of(kind, timeframe)
    console.print(
        f"exported {result.rows:,} {what} of {names[0]} into {len(result.files)} {fmt} file(s) "
        f"under {escape(str(out))}"
    )
    sys.stdout.flush()
