"""``tickpipe requests list|show|cancel``: the requests published lately and their progress, as
the tracker reports it on ``request-events`` (``docs/topics/request-events.md``), and their
cancellation (``docs/topics/request-cancellations.md``)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from aiokafka.errors import KafkaError
from rich import box
from rich.markup import escape
from rich.table import Table
from tickpipe_shared.config import get_settings

from tickpipe_cli import requests as request_ops
from tickpipe_cli.output import console, err
from tickpipe_cli.times import parse_time

app = typer.Typer(help="Requests published lately: progress, details, cancellation.")

#: Default look-back of ``list`` and ``show``.
DEFAULT_SINCE_S = 7 * 86400.0


def _views(since: str | None) -> dict[str, request_ops.RequestView]:
    settings = get_settings()
    since_ms = (
        int(parse_time(since).timestamp() * 1000)
        if since
        else int((time.time() - DEFAULT_SINCE_S) * 1000)
    )
    try:
        return asyncio.run(request_ops.request_views(settings, since_ms))
    except KafkaError as e:
        err.print(f"[red]cannot read Kafka at {settings.kafka_bootstrap}: {e}[/red]")
        raise typer.Exit(request_ops.EXIT_UNREACHABLE) from None


def _counts(state: dict[str, Any]) -> str:
    if state.get("status") in ("published", "rejected"):
        return ""
    parts = [f"{state.get(n, 0) or 0} {n.replace('_', '-')}"
             for n in ("stored", "empty", "suspect_empty", "failed", "cancelled")
             if state.get(n) or n in ("stored", "failed")]  # fmt: skip
    units = state.get("units")
    return ", ".join(parts) + f" of {units if units is not None else '?'}"


def _status(view: request_ops.RequestView) -> str:
    status = str(view.state.get("status"))
    if view.cancelled and status not in ("completed", "rejected"):
        return f"{status} (cancel requested)"
    return status


SINCE = typer.Option("--since", help="Look back to this UTC time (default: 7 days)")


@app.command("list")
def list_(
    since: Annotated[str | None, SINCE] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Requests published (or reported by the tracker) since --since: id, what was asked,
    status (published, running, completed, rejected) and unit counts."""
    views = list(_views(since).values())
    if as_json:
        sys.stdout.write(json.dumps([v.to_dict() for v in views], indent=2) + "\n")
        return
    if not views:
        console.print("no requests in that period")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("request id", "source", "instrument", "kind", "from", "to", "status", "units"):
        table.add_column(col, no_wrap=col == "request id")
    for v in views:
        asked = v.request or {}
        kind = str(asked.get("kind", v.state.get("kind") or ""))
        if asked.get("timeframe"):
            kind += f":{asked['timeframe']}"
        table.add_row(
            v.request_id, str(asked.get("source", v.state.get("source") or "")),
            str(asked.get("instrument", v.state.get("instrument") or "")), kind,
            str(asked.get("from", "")), str(asked.get("to", "")), _status(v), _counts(v.state),
        )  # fmt: skip
    console.print(table)


@app.command("show")
def show(
    request_id: Annotated[str, typer.Argument(help="The request id (tickpipe requests list)")],
    since: Annotated[str | None, SINCE] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """One request: what was asked, its status and counts, failure reasons. Exit 2 when no
    such request was seen in the look-back."""
    view = _views(since).get(request_id)
    if view is None:
        err.print(f"no request {request_id} published or reported in the look-back period")
        raise typer.Exit(request_ops.EXIT_INVALID)
    if as_json:
        sys.stdout.write(json.dumps(view.to_dict(), indent=2) + "\n")
        return
    asked = view.request or {}
    console.print(f"request [bold]{view.request_id}[/bold]: {_status(view)}")
    for key in ("source", "instrument", "kind", "timeframe", "side", "from", "to",
                "skip_existing", "requested_at"):  # fmt: skip
        if key in asked:
            console.print(f"  {key}: {escape(str(asked[key]))}")
    state = view.state
    if state.get("status") == "rejected":
        console.print(f"  [red]rejected[/red]: {escape(str(state.get('reason')))}")
    elif state.get("status") != "published":
        console.print(f"  units: {_counts(state)}; skipped (already stored): "
                      f"{state.get('skipped', 0)}; rows: {state.get('ticks', 0)}")  # fmt: skip
    for note in state.get("notes") or []:
        console.print(f"  [yellow]note[/yellow]: {escape(str(note))}")
    updated = state.get("updated_ms")
    if isinstance(updated, int):
        console.print(
            f"  last event: {datetime.fromtimestamp(updated / 1000, UTC):%Y-%m-%dT%H:%M:%SZ}"
        )
    for f in state.get("failures") or []:
        console.print(f"  [red]failed[/red] {escape(str(f.get('unit_key', '')))} "
                      f"({f.get('stage')}): {escape(str(f.get('reason')))}")  # fmt: skip


@app.command("cancel")
def cancel(
    request_id: Annotated[str, typer.Argument(help="The request id to cancel")],
) -> None:
    """Cancel a request: the planner refuses it if it is not planned yet, the downloaders skip
    its units not downloaded yet (reported as cancelled); units already stored stay."""
    settings = get_settings()
    try:
        asyncio.run(request_ops.cancel(settings, request_id))
    except KafkaError as e:
        err.print(f"[red]cannot publish to Kafka at {settings.kafka_bootstrap}: {e}[/red]")
        raise typer.Exit(request_ops.EXIT_UNREACHABLE) from None
    console.print(f"cancellation of request {request_id} published")
