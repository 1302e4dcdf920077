"""``tickpipe sources check``: can this machine reach the configured sources right now?

``bin/demo`` runs it before starting anything when there is no recorded sample, so that a machine
without internet hears it in one line instead of waiting for failed units.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from tickpipe_shared.config import get_settings
from tickpipe_shared.instruments.catalog import RegistryUnavailableError, probe_registry

from tickpipe_cli.output import console, err

app = typer.Typer(help="The sources this machine is configured for.")

#: Exit code of ``sources check`` when the source cannot be reached.
UNREACHABLE = 3


@app.command("check")
def check(
    timeout: Annotated[
        float, typer.Option(help="Seconds the whole check may take", min=0.1)
    ] = 15.0,
) -> None:
    """Download the Dukascopy JSON API's instrument list (what both Dukascopy sources need)
    from TICKPIPE_DUKASCOPY_JSON_URL; print one line: reachable with N instruments, or why not
    (exit 3)."""
    settings = get_settings()
    try:
        count = asyncio.run(probe_registry(settings, timeout))
    except RegistryUnavailableError as e:
        err.print(f"dukascopy-json: {e}", markup=False, highlight=False)
        raise typer.Exit(UNREACHABLE) from None
    console.print(
        f"dukascopy-json: {settings.dukascopy_json_url} reachable, {count} instruments",
        markup=False, highlight=False,
    )  # fmt: skip
