"""The ``tickpipe`` command: publish fetch requests, see what is stored, manage the schema."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated

import typer
from aiokafka.errors import KafkaError
from rich import box
from rich.table import Table
from tickpipe_shared.config import get_settings
from tickpipe_shared.db.coverage import coverage, daily_coverage
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.instruments.registry import canonical_name
from tickpipe_shared.instruments.schedule import default_schedule_for
from tickpipe_shared.logging import configure_logging
from tickpipe_shared.wire.requests import SOURCES, RequestError, parse_request

from tickpipe_cli import candles as candle_ops
from tickpipe_cli import export as export_ops
from tickpipe_cli import replay as replay_ops
from tickpipe_cli import requests as request_ops
from tickpipe_cli.db import connect
from tickpipe_cli.output import console, err
from tickpipe_cli.times import parse_time

app = typer.Typer(
    help="tickpipe: historical market data over Kafka into PostgreSQL/TimescaleDB.",
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="Database schema.")
app.add_typer(db_app, name="db")
app.command("candles")(candle_ops.command)
app.command("export")(export_ops.command)


@app.callback()
def _setup() -> None:
    # Library log lines (migrations, Kafka) go to stderr and only when they matter, so that
    # stdout stays clean for --json.
    configure_logging("cli", "WARNING", stream="stderr")


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
        "from": parse_time(from_).isoformat(),
        "to": parse_time(to).isoformat(),
    }
    try:
        req = parse_request(json.dumps(payload).encode())
    except RequestError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None
    try:
        asyncio.run(request_ops.publish(settings, req))
    except KafkaError as e:
        err.print(f"[red]cannot publish to Kafka at {settings.kafka_bootstrap}: {e}[/red]")
        raise typer.Exit(1) from None
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
    by_day: Annotated[
        bool,
        typer.Option(
            "--by-day",
            help="Per instrument and UTC day: hours the trading schedule expects vs stored, "
            "empty, suspect-empty, failed and missing",
        ),
    ] = False,
    from_: Annotated[
        str | None,
        typer.Option("--from", help="With --by-day: from this UTC day (default: first unit)"),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to", help="With --by-day: to this UTC time, exclusive (default: last unit end)"
        ),
    ] = None,
) -> None:
    """Per-instrument coverage: units stored, empty, suspect-empty, failed; ticks, first and
    last tick. With --by-day: per UTC day, where the gaps are.

    An hour is expected when the instrument's trading schedule has the market open for any part
    of it (currency pairs: Sunday 22:00 to Friday 22:00 UTC); instruments without a known
    schedule expect all 24 hours. Missing = expected hours without any ledger row.
    """
    if (from_ or to) and not by_day:
        raise typer.BadParameter("--from and --to go with --by-day")
    name = canonical_name(instrument) if instrument else None
    start = parse_time(from_) if from_ else None
    end = parse_time(to) if to else None
    if start and end and end <= start:
        raise typer.BadParameter(f"--to ({to}) must be after --from ({from_})")

    async def run() -> list[dict[str, object]]:
        conn = await connect(get_settings())
        try:
            await migrate(conn)
            covered = await coverage(conn, name)
            if not by_day:
                return [c.to_dict() for c in covered]
            days: list[dict[str, object]] = []
            bounds = {c.instrument: (c.first_unit, c.last_unit) for c in covered}
            if name and name not in bounds:
                bounds[name] = (None, None)  # nothing stored: all missing, given a range
            for inst, (first, last) in bounds.items():
                lo, hi = start or first, end or last
                if lo is None or hi is None or hi <= lo:
                    continue
                got = await daily_coverage(conn, inst, lo, hi, default_schedule_for)
                days += [d.to_dict() for d in got]
            return days
        finally:
            await conn.close()

    rows = asyncio.run(run())
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not rows:
        console.print("no data stored yet")
        return

    def hours(values: object) -> str:
        """``[0, 1, 2, 5]`` → ``00-02,05``."""
        hs = [int(h) for h in values] if isinstance(values, list) else []
        runs: list[list[int]] = []
        for h in hs:
            if runs and h == runs[-1][1] + 1:
                runs[-1][1] = h
            else:
                runs.append([h, h])
        return ",".join(f"{a:02d}" if a == b else f"{a:02d}-{b:02d}" for a, b in runs)

    def count(value: object, style: str) -> str:
        return f"[{style}]{value}[/{style}]" if value else str(value)

    if not by_day:
        table = Table(title="tickpipe coverage")
        for col in (
            "instrument",
            "units stored",
            "units empty",
            "suspect-empty",
            "partial",
            "failed",
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
                count(r["units_suspect_empty"], "yellow"),
                count(r["units_partial"], "yellow"),
                count(r["units_failed"], "bold red"),
                f"{r['ticks']:,}",
                str(r["first_tick"] or "—"),
                str(r["last_tick"] or "—"),
            )
        console.print(table)
        return

    for inst in dict.fromkeys(str(r["instrument"]) for r in rows):
        mine = [r for r in rows if r["instrument"] == inst]
        scheduled = bool(mine[0]["scheduled"])
        table = Table(
            title=f"{inst} by UTC day",
            caption=None
            if scheduled
            else f"no trading schedule known for {inst}: every hour is expected",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        # Columns that are all zero (partial, suspect-empty: rare) are left out of the table.
        counts = [("expected", "exp", ""), ("stored", "stored", ""), ("empty", "empty", "")]
        counts += [
            (key, head, "yellow")
            for key, head in (("suspect_empty", "suspect"), ("partial", "partial"))
            if any(r[key] for r in mine)
        ]
        counts += [("failed", "failed", "bold red"), ("missing", "missing", "bold red")]
        table.add_column("day", no_wrap=True)
        for _, head, _ in counts:
            table.add_column(head, justify="right")
        table.add_column("ticks", justify="right")
        table.add_column("gaps (UTC hours)", overflow="fold", min_width=16)
        for r in mine:
            gaps = []
            if r["missing"]:
                gaps.append(f"[bold red]missing {hours(r['missing_hours'])}[/bold red]")
            if r["failed"]:
                gaps.append(f"[red]failed {hours(r['failed_hours'])}[/red]")
            quiet = not r["expected"] and not any(
                r[k] for k in ("stored", "empty", "suspect_empty", "partial", "failed")
            )
            table.add_row(
                str(r["day"]),
                *(count(r[key], style) if style else str(r[key]) for key, _, style in counts),
                f"{r['ticks']:,}",
                " ".join(gaps) or ("closed" if quiet else "[green]complete[/green]"),
                style="dim" if quiet else None,
            )
        console.print(table)
        totals = {k: sum(int(str(r[k])) for r in mine) for k in ("expected", "missing", "failed")}
        style = "bold red" if totals["missing"] or totals["failed"] else "green"
        console.print(
            f"[{style}]{inst}: {totals['expected']} hours expected, {totals['missing']} missing, "
            f"{totals['failed']} failed[/{style}]"
        )


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
    when = parse_time(since) if since else None
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
