"""``tickpipe api-key create|list|revoke``: keys of the Market Data API (table ``api_keys``).

The key is printed once, by ``create``; only its hash is stored."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import asyncpg
import typer
from rich import box
from rich.table import Table
from tickpipe_shared.config import get_settings
from tickpipe_shared.db.api_keys import (
    SCOPES,
    ApiKey,
    ApiKeyError,
    create_key,
    list_keys,
    revoke_key,
)
from tickpipe_shared.db.migrate import migrate

from tickpipe_cli.db import connect
from tickpipe_cli.output import console, err

T = TypeVar("T")

app = typer.Typer(help="Keys of the Market Data API (tickpipe-api).")


async def _with_conn(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run ``work`` on a migrated connection to TICKPIPE_DATABASE_URL."""
    conn = await connect(get_settings())
    try:
        await migrate(conn)
        return await work(conn)
    finally:
        await conn.close()


@app.command("create")
def create(
    name: Annotated[
        str, typer.Argument(help="Who or what the key is for, e.g. research-notebooks")
    ],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", "-s", help=f"Repeatable: {', '.join(SCOPES)} (default: read)"),
    ] = None,
    rate_limit: Annotated[
        float | None,
        typer.Option(help="Requests per second for this key (default: TICKPIPE_API_RATE_LIMIT)"),
    ] = None,
) -> None:
    """Create a key and print it once (store it now: only its hash is kept)."""
    scopes = scope or ["read"]
    try:
        stored, key = asyncio.run(_with_conn(lambda c: create_key(c, name, scopes, rate_limit)))
    except ApiKeyError as e:
        raise typer.BadParameter(str(e)) from None
    err.print(
        f"created key {stored.key_id} ({stored.name}; scopes: {', '.join(stored.scopes)}); "
        "it is shown only now:"
    )
    sys.stdout.write(key + "\n")


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    active: Annotated[bool, typer.Option("--active", help="Leave revoked keys out")] = False,
) -> None:
    """Every key: id, name, scopes, rate limit, created, last used, revoked (never the key)."""
    keys: list[ApiKey] = asyncio.run(_with_conn(lambda c: list_keys(c, not active)))
    if as_json:
        sys.stdout.write(json.dumps([k.to_dict() for k in keys], indent=2) + "\n")
        return
    if not keys:
        console.print("no API keys")
        return
    table = Table(title="tickpipe API keys", box=box.SIMPLE_HEAD)
    for col in ("key id", "name", "scopes", "rate/s", "created", "last used", "revoked"):
        table.add_column(col)
    for k in keys:
        d = k.to_dict()
        rate = "" if k.rate_limit is None else f"{k.rate_limit:g}"
        table.add_row(
            k.key_id,
            k.name,
            ",".join(k.scopes),
            rate,
            str(d["created_at"])[:19],
            str(d["last_used_at"] or "")[:19],
            str(d["revoked_at"] or "")[:19],
            style="dim" if not k.active else None,
        )
    console.print(table)


@app.command("revoke")
def revoke(
    key: Annotated[str, typer.Argument(help="Key id (from list) or name")],
) -> None:
    """Revoke a key: the API refuses it (401) within TICKPIPE_API_KEY_CACHE_S seconds."""
    done: list[ApiKey] = asyncio.run(_with_conn(lambda c: revoke_key(c, key)))
    if not done:
        err.print(f"[red]no active key with id or name {key!r}[/red]")
        raise typer.Exit(1)
    for k in done:
        console.print(f"revoked {k.key_id} ({k.name})")
