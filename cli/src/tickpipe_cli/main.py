"""The ``tickpipe`` command: publish fetch requests, see what is stored, manage the schema."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from aiokafka.errors import KafkaError
from rich import box
from rich.markup import escape
from rich.table import Table
from tickpipe_shared.config import Settings, get_settings
from tickpipe_shared.config_file import CONFIG_ENV
from tickpipe_shared.db.coverage import status_report
from tickpipe_shared.db.migrate import migrate, storage_description
from tickpipe_shared.instruments import UnknownInstrumentError
from tickpipe_shared.instruments.schedule import default_schedule_for
from tickpipe_shared.kafka.records import RetryableError
from tickpipe_shared.kinds import Kind, KindError
from tickpipe_shared.logging import configure_logging
from tickpipe_shared.sources import SOURCE_NAMES
from tickpipe_shared.units import unit_span
from tickpipe_shared.wire.requests import FetchRequest, RequestError, parse_request

from tickpipe_cli import api_keys as api_key_ops
from tickpipe_cli import candles as candle_ops
from tickpipe_cli import config_cmd as config_ops
from tickpipe_cli import export as export_ops
from tickpipe_cli import plan as plan_ops
from tickpipe_cli import replay as replay_ops
from tickpipe_cli import requests as request_ops
from tickpipe_cli import requests_cmd
from tickpipe_cli import sources as source_ops
from tickpipe_cli import topics as topic_ops
from tickpipe_cli.db import connect, stored_name
from tickpipe_cli.output import console, err
from tickpipe_cli.progress import display_for
from tickpipe_cli.times import parse_time

app = typer.Typer(
    help="tickpipe: historical market data over Kafka into PostgreSQL/TimescaleDB.",
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="Database schema.")
app.add_typer(db_app, name="db")
app.command("candles")(candle_ops.command)
app.command("export")(export_ops.command)
app.add_typer(api_key_ops.app, name="api-key")
app.add_typer(topic_ops.app, name="topics")
app.add_typer(source_ops.app, name="sources")
app.add_typer(config_ops.app, name="config")
app.add_typer(requests_cmd.app, name="requests")


@app.callback()
def _setup(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help=f"Configuration file (default: ${CONFIG_ENV}); environment variables win over it",
        ),
    ] = None,
) -> None:
    if config is not None:
        # Through the environment, so that every settings class (and anything started from
        # here) reads the same file.
        os.environ[CONFIG_ENV] = str(config)
        get_settings.cache_clear()
    # Library log lines (migrations, Kafka) go to stderr and only when they matter, so that
    # stdout stays clean for --json.
    configure_logging("cli", "WARNING", stream="stderr")


@app.command()
def request(
    instrument: Annotated[
        str,
        typer.Argument(help="Instrument as the source names it: EURUSD, R_50, C:EURUSD, AAPL"),
    ],
    from_: Annotated[str, typer.Option("--from", help="Start, inclusive (UTC ISO-8601)")],
    to: Annotated[str, typer.Option("--to", help="End, exclusive (UTC ISO-8601)")],
    source: Annotated[str, typer.Option(help=f"One of: {', '.join(SOURCE_NAMES)}")] = "",
    kind: Annotated[str, typer.Option(help="ticks or candles")] = "ticks",
    timeframe: Annotated[
        str | None, typer.Option(help="Candles: timeframe, e.g. 1m, 1h, 1d (see docs/fetcher.md)")
    ] = None,
    side: Annotated[
        str | None, typer.Option(help="Candles: bid or ask (Dukascopy), mid (Deriv), trade")
    ] = None,
    skip_existing: Annotated[
        bool,
        typer.Option(
            "--skip-existing",
            help="Resume: skip units the ingest log has stored or empty since they closed",
        ),
    ] = False,
    wait: Annotated[bool, typer.Option(help="Wait until every unit is stored or failed")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most")] = 1800.0,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the fetcher's plan (units, already stored, closed market, estimated "
            "rows/bytes, time at the rate limit) and publish nothing",
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="With --wait: print only the final line")
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="With --wait: print only the completion event; with --dry-run: the plan"
        ),
    ] = False,
) -> None:
    """Publish a fetch request for INSTRUMENT ticks (or candles) over [--from, --to).

    The request is validated here and by the fetcher (unknown instruments are only known
    there); anything it rejects lands in the failures topic with the reason, which --wait
    reports. Exit codes: 0 every unit stored or empty; 1 some units failed; 2 invalid or
    rejected request; 3 --wait timed out; 4 Kafka (--dry-run: database or instrument
    metadata) unreachable; 5 cancelled (tickpipe requests cancel).
    """
    settings = get_settings()
    payload: dict[str, object] = {
        "instrument": instrument,
        "source": source or settings.default_source,
        "kind": kind,
        "from": parse_time(from_).isoformat(),
        "to": parse_time(to).isoformat(),
    }
    if timeframe is not None:
        payload["timeframe"] = timeframe
    if side is not None:
        payload["side"] = side
    if skip_existing:
        payload["skip_existing"] = True
    try:
        req = parse_request(json.dumps(payload).encode())
    except RequestError as e:
        err.print(f"[red]{escape(str(e))}[/red]")
        raise typer.Exit(request_ops.EXIT_INVALID) from None
    if dry_run:
        raise typer.Exit(_dry_run(settings, req, as_json))
    try:
        asyncio.run(request_ops.publish(settings, req))
    except KafkaError as e:
        err.print(f"[red]cannot publish to Kafka at {settings.kafka_bootstrap}: {e}[/red]")
        raise typer.Exit(request_ops.EXIT_UNREACHABLE) from None
    if not (wait and (quiet or as_json)):
        console.print(
            f"published request [bold]{req.request_id}[/bold]: {req.source} {req.instrument} "
            f"{req.unit_kind} {req.from_:%Y-%m-%dT%H:%MZ} → {req.to:%Y-%m-%dT%H:%MZ}"
            + (" (skipping existing units)" if req.skip_existing else "")
        )
    if wait:
        display = display_for(quiet, as_json)
        result = asyncio.run(request_ops.wait(settings, req, timeout, display))
        code = request_ops.exit_code(result)
        if code:
            raise typer.Exit(code)


def _dry_run(settings: Settings, req: FetchRequest, as_json: bool) -> int:
    """Print the plan of ``req``; the exit code."""

    async def run() -> plan_ops.DryRun:
        plan = await plan_ops.preview(settings, req)
        conn = await connect(settings)
        try:
            await migrate(conn, settings.database_timescaledb)
            stored = await plan_ops.stored_estimate(conn, plan.target.name, plan.kind)
        finally:
            await conn.close()
        return plan_ops.dry_run(settings, req, plan, stored)

    try:
        result = asyncio.run(run())
    except (RequestError, UnknownInstrumentError) as e:
        err.print(f"[red]{escape(str(e))}[/red]")
        return request_ops.EXIT_INVALID
    except RetryableError as e:
        err.print(f"[red]cannot plan now: {escape(str(e))}[/red]")
        return request_ops.EXIT_UNREACHABLE
    except SystemExit as e:  # connect(): the database is unreachable, message included
        err.print(f"[red]{escape(str(e.code))}[/red]")
        return request_ops.EXIT_UNREACHABLE
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    else:
        for line in result.lines():
            console.print(line, markup=False, highlight=False)
    return request_ops.EXIT_OK


@app.command()
def status(
    instrument: Annotated[str | None, typer.Argument(help="Only this instrument")] = None,
    kind: Annotated[
        str | None,
        typer.Option(help="Only this kind: ticks or candles:<timeframe>:<side> (candles:1m:bid)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    by_day: Annotated[
        bool,
        typer.Option(
            "--by-day",
            help="Per instrument, kind and period (UTC day for hour and day units; month or "
            "year for longer candle units): units the trading schedule expects vs stored, "
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
    """Coverage per instrument and kind: units stored, empty, suspect-empty, failed; rows,
    first and last row. With --by-day: per period, where the gaps are.

    A unit is expected when the instrument's trading schedule has the market open for any part
    of it (currency pairs: Sunday 17:00 to Friday 17:00 New York time); instruments without a
    known schedule expect every unit. Missing = expected units without any ledger row.
    """
    if (from_ or to) and not by_day:
        raise typer.BadParameter("--from and --to go with --by-day")
    if kind is not None:
        try:
            kind = str(Kind.parse(kind))
        except KindError as e:
            raise typer.BadParameter(str(e), param_hint="--kind") from None
    start = parse_time(from_) if from_ else None
    end = parse_time(to) if to else None
    if start and end and end <= start:
        raise typer.BadParameter(f"--to ({to}) must be after --from ({from_})")

    async def run() -> tuple[list[dict[str, Any]], str]:
        settings = get_settings()
        conn = await connect(settings)
        try:
            await migrate(conn, settings.database_timescaledb)
            name = await stored_name(conn, instrument) if instrument else None
            rows = await status_report(
                conn, default_schedule_for, name, kind, by_period=by_day, from_=start, to=end
            )
            return rows, await storage_description(conn)
        finally:
            await conn.close()

    rows, storage = asyncio.run(run())
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    console.print(f"storage: {storage}")
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
            "kind",
            "units stored",
            "units empty",
            "suspect-empty",
            "partial",
            "failed",
            "rows",
            "first row",
            "last row",
        ):
            table.add_column(col, justify="left" if col in ("instrument", "kind") else "right")
        for r in rows:
            table.add_row(
                str(r["instrument"]),
                str(r["kind"]),
                str(r["units_stored"]),
                str(r["units_empty"]),
                count(r["units_suspect_empty"], "yellow"),
                count(r["units_partial"], "yellow"),
                count(r["units_failed"], "bold red"),
                f"{r['rows']:,}",
                str(r["first_row"] or "—"),
                str(r["last_row"] or "—"),
            )
        console.print(table)
        return

    for inst, k in dict.fromkeys((str(r["instrument"]), str(r["kind"])) for r in rows):
        mine = [r for r in rows if r["instrument"] == inst and r["kind"] == k]
        period = str(mine[0].get("period", "day"))
        hourly = k == "ticks" or (period == "day" and unit_span(k) == "hour")
        scheduled = bool(mine[0]["scheduled"])
        table = Table(
            title=f"{inst} {k} by UTC {period}",
            caption=None
            if scheduled
            else f"no trading schedule known for {inst}: every unit is expected",
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
        table.add_column(period, no_wrap=True)
        for _, head, _ in counts:
            table.add_column(head, justify="right")
        table.add_column("rows", justify="right")
        table.add_column("gaps (UTC hours)" if hourly else "gaps (units)", overflow="fold")
        for r in mine:
            gaps = []
            if r["missing"]:
                what = hours(r["missing_hours"]) if hourly else ", ".join(r["missing_units"])
                gaps.append(f"[bold red]missing {what}[/bold red]")
            if r["failed"]:
                what = hours(r["failed_hours"]) if hourly else ", ".join(r["failed_units"])
                gaps.append(f"[red]failed {what}[/red]")
            quiet = not r["expected"] and not any(
                r[x] for x in ("stored", "empty", "suspect_empty", "partial", "failed")
            )
            table.add_row(
                str(r["day"]),
                *(count(r[key], style) if style else str(r[key]) for key, _, style in counts),
                f"{r['rows']:,}",
                " ".join(gaps) or ("closed" if quiet else "[green]complete[/green]"),
                style="dim" if quiet else None,
            )
        console.print(table)
        totals = {x: sum(int(str(r[x])) for r in mine) for x in ("expected", "missing", "failed")}
        style = "bold red" if totals["missing"] or totals["failed"] else "green"
        console.print(
            f"[{style}]{inst} {k}: {totals['expected']} units expected, "
            f"{totals['missing']} missing, {totals['failed']} failed[/{style}]"
        )


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending schema migrations (the writer also does this at start-up)."""

    async def run() -> None:
        settings = get_settings()
        conn = await connect(settings)
        try:
            report = await migrate(conn, settings.database_timescaledb)
            storage = await storage_description(conn)
        finally:
            await conn.close()
        tables = "hypertables" if report.timescaledb else "tables"
        console.print(
            f"schema at version {report.current} ({storage} {tables}); "
            f"applied: {report.applied or 'none'}"
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
