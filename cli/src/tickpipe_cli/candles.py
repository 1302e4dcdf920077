"""``tickpipe candles``: OHLCV candles from the ``ohlcv_*`` aggregates (TimescaleDB) or views over
ticks, or with ``--source-candles`` the candles the sources served (table ``candles``)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from tickpipe_shared.config import get_settings
from tickpipe_shared.db.ledger import source_candle_sides
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.db.ohlcv import (
    CANDLE_COLUMNS,
    SOURCE_CANDLE_COLUMNS,
    TIMEFRAMES,
    Candle,
    SourceCandle,
    UnknownTimeframeError,
    candles,
    parse_timeframe,
    price_scale,
    source_candles,
    source_series,
)
from tickpipe_shared.kinds import SIDES, KindError, Timeframe

from tickpipe_cli.db import connect, stored_name
from tickpipe_cli.output import console, err
from tickpipe_cli.times import parse_time

_PRICE = {c for c in CANDLE_COLUMNS if c.startswith(("bid_", "ask_", "mid_"))} - {
    "bid_volume",
    "ask_volume",
}
#: The terminal table of OHLCV candles: (column, header).
_BID_TABLE = (
    ("bucket", "bucket"),
    ("bid_open", "open"),
    ("bid_high", "high"),
    ("bid_low", "low"),
    ("bid_close", "close"),
    ("tick_count", "ticks"),
    ("bid_volume", "bid vol"),
    ("ask_volume", "ask vol"),
)


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


Format = Callable[[Any, str], str]


def emit(
    values: Sequence[dict[str, Any]],
    columns: Sequence[str],
    fmt: Format,
    *,
    as_json: bool,
    as_csv: bool,
    nothing: str,
) -> bool:
    """Print the rows ``values`` as a JSON array (``as_json``) or as CSV with a header of
    ``columns``, each value through ``fmt(value, column)`` (``as_csv``), or ``nothing`` on
    stderr when there are none. True when printed: otherwise the caller prints its table."""
    if as_json:
        sys.stdout.write(json.dumps(list(values), indent=2) + "\n")
        return True
    if as_csv:
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        out.writerow(columns)
        for d in values:
            out.writerow(fmt(d[col], col) for col in columns)
        sys.stdout.write(buf.getvalue())
        return True
    if not values:
        err.print(nothing)
        return True
    return False


def print_table(
    title: str,
    headers: Sequence[tuple[str, str]],
    values: Sequence[dict[str, Any]],
    fmt: Format,
) -> None:
    """A terminal table of ``values``: one column per ``(column, header)``, the first one (the
    time) left-aligned, the others right-aligned, each value through ``fmt(value, column)``."""
    table = Table(
        title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True
    )
    for i, (_, header) in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right", no_wrap=True)
    for d in values:
        table.add_row(*(fmt(d[col], col) for col, _ in headers))
    console.print(table)


def command(
    instrument: Annotated[str, typer.Argument(help="Instrument, e.g. EURUSD")],
    from_: Annotated[str, typer.Option("--from", help="First bucket start, inclusive (UTC)")],
    to: Annotated[str, typer.Option("--to", help="Last bucket start, exclusive (UTC)")],
    timeframe: Annotated[
        str,
        typer.Option(
            "--timeframe",
            "-t",
            help=f"Any fixed timeframe: {', '.join(TIMEFRAMES)} from their continuous "
            "aggregates, others (15m, 4h, 1w, 30s…) rolled up from the coarsest that divides them",
        ),
    ] = "1h",
    as_json: Annotated[bool, typer.Option("--json", help="JSON array on stdout")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV with a header on stdout")] = False,
    source: Annotated[
        bool,
        typer.Option(
            "--source-candles",
            help="The candles the sources served (any stored timeframe, e.g. 1m, 1h, 1d, 1w), "
            "not those computed from ticks",
        ),
    ] = False,
    side: Annotated[
        str | None,
        typer.Option(
            "--side",
            help=f"With --source-candles: {', '.join(SIDES)} (default: the one side stored)",
        ),
    ] = None,
) -> None:
    """OHLCV candles of INSTRUMENT whose bucket starts in [--from, --to).

    Bid, ask and mid ((bid + ask) / 2 per tick) open/high/low/close, tick count and volume sums,
    from the continuous aggregates on TimescaleDB or the views on plain PostgreSQL. With
    --source-candles: the candles of one side as the source served them (Dukascopy bid/ask,
    Deriv mid, Polygon trade), with their volume and validation flags.
    """
    if as_json and as_csv:
        raise typer.BadParameter("--json and --csv exclude each other")
    if source:
        source_command(instrument, from_, to, timeframe, side, as_json=as_json, as_csv=as_csv)
        return
    if side is not None:
        raise typer.BadParameter("only with --source-candles", param_hint="--side")
    try:
        timeframe = str(parse_timeframe(timeframe))
    except UnknownTimeframeError as e:
        raise typer.BadParameter(str(e), param_hint="--timeframe") from None
    start, end = parse_time(from_), parse_time(to)
    if end <= start:
        raise typer.BadParameter(f"--to ({to}) must be after --from ({from_})")
    names: list[str] = []

    async def run() -> tuple[list[Candle], int | None]:
        conn = await connect(get_settings())
        try:
            await migrate(conn, get_settings().database_timescaledb)
            names.append(name := await stored_name(conn, instrument))
            return await candles(conn, name, timeframe, start, end), await price_scale(conn, name)
        finally:
            await conn.close()

    rows, scale = asyncio.run(run())
    name = names[0]
    values = [_values(c, scale) for c in rows]

    def fmt(value: Any, col: str) -> str:
        return _fmt(value, col, scale)

    nothing = f"no {timeframe} candles for {name} in [{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M})"
    if emit(values, CANDLE_COLUMNS, fmt, as_json=as_json, as_csv=as_csv, nothing=nothing):
        return
    for d, c in zip(values, rows, strict=True):
        d["bucket"] = f"{c.bucket.astimezone(UTC):%Y-%m-%d %H:%M}"
    # Bid candles, the FX charting convention, fit a terminal; --json/--csv have every column.
    print_table(
        f"{name} {timeframe} bid candles, UTC (ask and mid: --json or --csv)",
        _BID_TABLE,
        values,
        fmt,
    )


# --------------------------------------------------------------------------- source candles


def _source_values(c: SourceCandle, scale: int | None) -> dict[str, Any]:
    """A source candle as plain values: prices rounded to the instrument's scale (exact: it only
    undoes float8 noise), volume to 6 decimals."""
    d = c.to_dict()
    if scale is not None:
        for col in ("open", "high", "low", "close"):
            d[col] = round(d[col], scale)
    if d["volume"] is not None:
        d["volume"] = round(d["volume"], 6)
    return d


def _source_fmt(value: Any, col: str, scale: int | None) -> str:
    if value is None:
        return ""
    if col in ("open", "high", "low", "close") and scale is not None:
        return f"{value:.{scale}f}"
    return str(value)


async def read_source_candles(
    conn: Any,
    instrument: str,
    timeframe: str,
    side: str | None,
    from_: datetime,
    to: datetime,
) -> tuple[str, list[SourceCandle], int | None]:
    """The side read (``side``, or the only side stored for the timeframe), the source candles
    of ``instrument`` at ``timeframe`` starting in ``[from_, to)`` and the instrument's price
    scale. Raises :class:`typer.BadParameter` when ``side`` is omitted and not exactly one side
    is stored, and for a malformed timeframe or side."""
    try:
        tf = str(Timeframe.parse(timeframe))
        if side is None:
            sides = [s for _, s in await source_candle_sides(conn, instrument, tf)]
            if len(sides) != 1:
                stored = ", ".join(sides) if sides else "none"
                raise typer.BadParameter(
                    f"{instrument} has {tf} source candles of sides: {stored}; choose one",
                    param_hint="--side",
                )
            side = sides[0]
        tf, side = source_series(tf, side)
    except KindError as e:
        raise typer.BadParameter(str(e)) from None
    rows = await source_candles(conn, instrument, tf, side, from_, to)
    return side, rows, await price_scale(conn, instrument)


def source_command(
    instrument: str,
    from_: str,
    to: str,
    timeframe: str,
    side: str | None,
    *,
    as_json: bool = False,
    as_csv: bool = False,
) -> None:
    """``tickpipe candles --source-candles``: print source candles (table, ``--json`` or
    ``--csv``)."""
    start, end = parse_time(from_), parse_time(to)
    if end <= start:
        raise typer.BadParameter(f"--to ({to}) must be after --from ({from_})")
    names: list[str] = []

    async def run() -> tuple[str, list[SourceCandle], int | None]:
        conn = await connect(get_settings())
        try:
            await migrate(conn, get_settings().database_timescaledb)
            names.append(name := await stored_name(conn, instrument))
            return await read_source_candles(conn, name, timeframe, side, start, end)
        finally:
            await conn.close()

    read_side, rows, scale = asyncio.run(run())
    name = names[0]
    tf = str(Timeframe.parse(timeframe))
    values = [_source_values(c, scale) for c in rows]

    def fmt(value: Any, col: str) -> str:
        return _source_fmt(value, col, scale)

    nothing = (
        f"no {tf} {read_side} source candles for {name} in "
        f"[{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M})"
    )
    if emit(values, SOURCE_CANDLE_COLUMNS, fmt, as_json=as_json, as_csv=as_csv, nothing=nothing):
        return
    for d, c in zip(values, rows, strict=True):
        d["ts"] = f"{c.ts.astimezone(UTC):%Y-%m-%d %H:%M}"
    shown = ("ts", "open", "high", "low", "close", "volume", "flags")
    print_table(
        f"{name} {tf} {read_side} source candles, UTC", [(c, c) for c in shown], values, fmt
    )
