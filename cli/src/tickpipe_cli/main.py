"""The ``tickpipe`` command: publish fetch requests, see what is stored, manage the schema."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from tickpipe_shared.config import get_settings
from tickpipe_shared.db.coverage import coverage
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.logging import configure_logging
from tickpipe_shared.wire.requests import SOURCES, RequestError, parse_request

from tickpipe_cli import candles as candle_ops
from tickpipe_cli import replay as replay_ops
from tickpipe_cli import requests as request_ops
from tickpipe_cli.db import connect

app = typer.Typer(
    help="tickpipe: historical market data over Kafka into PostgreSQL/TimescaleDB.",
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="Database schema.")
app.add_typer(db_app, name="db")
app.command("candles")(candle_ops.command)
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@app.callback()
def _setup() -> None:
    # Library log lines (migrations, Kafka) go to stderr and only when they matter, so that
    # stdout stays clean for --json.
    configure_logging("cli", "WARNING", stream="stderr")


def _parse_time(value: str) -> datetime:
    """``2019-02-04`` or ``2019-02-04T13:00[:00][Z]`` as an aware UTC datetime."""
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO-8601 date or time (UTC)") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@app.command()
def request(
    instrument: Annotated[str, typer.Argument(help="Instrument, e.g. EURUSD")],
    from_: Annotated[str, typer.Option("--from", help="Start, inclusive (UTC ISO-8601)")],
    to: Annotated[str, typer.Option("--to", help="End, exclusive (UTC ISO-8601)")],
    source: Annotated[str, typer.Option(help=f"One of: {', '.join(SOURCES)}")] = "",
    wait: Annotated[bool, typer.Option(help="Wait until every unit is stored or failed")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most")] = 1800.0,
) -> None:
    """Publish a fetch request for INSTRUMENT ticks over [--from, --to).

    The request is validated by the fetcher too (unknown instruments are only known there);
    anything it rejects lands in the failures topic with the reason, which --wait reports.
    """
    settings = get_settings()
    payload = {
        "instrument": instrument,
        "source": source or settings.default_source,
        "from": _parse_time(from_).isoformat(),
        "to": _parse_time(to).isoformat(),
    }
    try:
        req = parse_request(json.dumps(payload).encode())
    except RequestError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None
    asyncio.run(request_ops.publish(settings, req))
    console.print(
        f"published request [bold]{req.request_id}[/bold]: {req.source} {req.instrument} "
        f"{req.from_:%Y-%m-%dT%H:%MZ} → {req.to:%Y-%m-%dT%H:%MZ}"
    )
    if wait:
        result = asyncio.run(request_ops.wait(settings, req, timeout, console))
        if not result.complete or result.failed:
            raise typer.Exit(1)


@app.command()
def status(
    instrument: Annotated[str | None, typer.Argument(help="Only this instrument")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Per-instrument coverage: units stored and empty, ticks, first and last tick."""

    async def run() -> list[dict[str, object]]:
        conn = await connect(get_settings())
        try:
            await migrate(conn)
            return [c.to_dict() for c in await coverage(conn, instrument)]
        finally:
            await conn.close()

    rows = asyncio.run(run())
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not rows:
        console.print("no data stored yet")
        return
    table = Table(title="tickpipe coverage")
    for col in (
        "instrument",
        "units stored",
        "units empty",
        "partial",
        "ticks",
        "first tick",
        "last tick",
    ):
        table.add_column(col, justify="right" if col not in ("instrument",) else "left")
    for r in rows:
        table.add_row(
            str(r["instrument"]),
            str(r["units_stored"]),
            str(r["units_empty"]),
            str(r["units_partial"]),
            f"{r['ticks']:,}",
            str(r["first_tick"] or "—"),
            str(r["last_tick"] or "—"),
        )
    console.print(table)


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending schema migrations (the writer also does this at start-up)."""

    async def run() -> None:
        conn = await connect(get_settings())
        try:
            report = await migrate(conn)
        finally:
            await conn.close()
        storage = "TimescaleDB hypertables" if report.timescaledb else "plain PostgreSQL tables"
        console.print(
            f"schema at version {report.current} ({storage}); applied: {report.applied or 'none'}"
        )

    asyncio.run(run())


@app.command()
def replay(
    stage: Annotated[str, typer.Argument(help="decoder, validator or writer")],
    since: Annotated[
        str | None, typer.Option("--since", help="Rewind to this UTC time (default: earliest)")
    ] = None,
) -> None:
    """Rewind STAGE's consumer group so it reprocesses what Kafka retains (raw payloads are
    kept forever: a decoder replay rebuilds everything without downloading). Stop the stage's
    replicas first; the writer replaces whole units, so nothing is duplicated."""
    when = _parse_time(since) if since else None
    try:
        moved = asyncio.run(replay_ops.rewind(get_settings(), stage, when))
    except replay_ops.ReplayError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None
    for m in moved:
        console.print(f"  partition {m.partition}: {m.old if m.old is not None else '-'} → {m.new}")
    console.print(f"{stage} rewound; start its replicas again to reprocess")


if __name__ == "__main__":
    app()
