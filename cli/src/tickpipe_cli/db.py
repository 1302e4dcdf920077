"""Database connections for the CLI."""

from __future__ import annotations

import asyncpg
from tickpipe_shared.config import Settings
from tickpipe_shared.logging import scrub


async def connect(settings: Settings) -> asyncpg.Connection:
    """A connection to ``TICKPIPE_DATABASE_URL``. Raises :class:`SystemExit` with a clear
    message (password masked) when the database cannot be reached."""
    dsn = settings.database_url.get_secret_value()
    try:
        return await asyncpg.connect(dsn, timeout=10)
    except (OSError, asyncpg.PostgresError) as e:
        raise SystemExit(f"cannot connect to the database at {scrub(dsn)}: {e}") from None
