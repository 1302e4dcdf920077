"""``tickpipe candles``: OHLCV candles from the ``ohlcv_*`` aggregates (TimescaleDB) or views."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from datetime import UTC
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from tickpipe_shared.config import get_settings
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.db.ohlcv import CANDLE_COLUMNS, TIMEFRAMES, Candle, candles, price_scale
from tickpipe_shared.instruments.registry import canonical_name

from tickpipe_cli.db import connect
from tickpipe_cli.output import console, err
from tickpipe_cli.times import parse_time

_PRICE = {c for c in CANDLE_COLUMNS if c.startswith(("bid_", "ask_", "mid_"))} - {
    "bid_volume",
    "ask_volume",
}


def _values(c: Candle, scale: int | None) -> dict[str, Any]:
    """A candle as plain values: bid/ask rounded to the instrument's scale, mid to one more
    decimal (both exact: they only undo float8 noise), volumes to 6 decimals."""
    d = c.to_dict()
    for col in _PRICE:
        if scale is not None:
            d[col] = round(d[col], scale + (1 if col.startswith("mid_") else 0))
    for col in ("bid_volume", "ask_volume"):
        if d[col] is not None:
            d[col] = round(d[col], 6)
    return d


def _fmt(value: Any, col: str, scale: int | None) -> str:
    if value is None:
        return ""
    if col in _PRICE and scale is not None:
        return f"{value:.{scale + (1 if col.startswith('mid_') else 0)}f}"
    return str(value)


def command(
    instrument: Annotated[str, typer.Argument(help="Instrument, e.g. EURUSD")],
    from_: Annotated[str, typer.Option("--from", help="First bucket start, inclusive (UTC)")],
    to: Annotated[str, typer.Option("--to", help="Last bucket start, exclusive (UTC)")],
    timeframe: Annotated[
        str, typer.Option("--timeframe", "-t", help=f"One of: {', '.join(TIMEFRAMES)}")
    ] = "1h",
    as_json: Annotated[bool, typer.Option("--json", help="JSON array on stdout")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV with a header on stdout")] = False,
) -> None:
    """OHLCV candles of INSTRUMENT whose bucket starts in [--from, --to).

    Bid, ask and mid ((bid + ask) / 2 per tick) open/high/low/close, tick count and volume sums,
    from the continuous aggregates on TimescaleDB or the views on plain PostgreSQL.
    """
    if timeframe not in TIMEFRAMES:
        raise typer.BadParameter(
            f"{timeframe!r} is not a timeframe: expected one of {', '.join(TIMEFRAMES)}",
            param_hint="--timeframe",
        )
    if as_json and as_csv:
        raise typer.BadParameter("--json and --csv exclude each other")
    start, end = parse_time(from_), parse_time(to)
    if end <= start:
        raise typer.BadParameter(f"--to ({to}) must be after --from ({from_})")
    name = canonical_name(instrument)

    async def run() -> tuple[list[Candle], int | None]:
        conn = await connect(get_settings())
        try:
            await migrate(conn)
            return await candles(conn, name, timeframe, start, end), await price_scale(conn, name)
        finally:
            await conn.close()

    rows, scale = asyncio.run(run())
    if as_json:
        sys.stdout.write(json.dumps([_values(c, scale) for c in rows], indent=2) + "\n")
        return
    if as_csv:
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        out.writerow(CANDLE_COLUMNS)
        for c in rows:
            d = _values(c, scale)
            out.writerow(_fmt(d[col], col, scale) for col in CANDLE_COLUMNS)
        sys.stdout.write(buf.getvalue())
        return
    if not rows:
        err.print(
            f"no {timeframe} candles for {name} in [{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M})"
        )
        return
    # Bid candles, the FX charting convention, fit a terminal; --json/--csv have every column.
    table = Table(
        title=f"{name} {timeframe} bid candles, UTC (ask and mid: --json or --csv)",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    shown = ["bucket", "bid_open", "bid_high", "bid_low", "bid_close", "tick_count"]
    shown += ["bid_volume", "ask_volume"]
    for col in shown:
        title = col.removeprefix("bid_") if col in _PRICE else col.replace("_", " ")
        title = {"tick count": "ticks", "bid volume": "bid vol", "ask volume": "ask vol"}.get(
            title, title
        )
        table.add_column(title, justify="left" if col == "bucket" else "right", no_wrap=True)
    for c in rows:
        d = _values(c, scale)
        d["bucket"] = f"{c.bucket.astimezone(UTC):%Y-%m-%d %H:%M}"
        table.add_row(*(_fmt(d[col], col, scale) for col in shown))
    console.print(table)
