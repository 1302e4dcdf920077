"""Database connections for the CLI."""

from __future__ import annotations

import asyncpg
from tickpipe_shared.config import Settings
from tickpipe_shared.db.connect import connect as connect_database
from tickpipe_shared.instruments.registry import canonical_name
from tickpipe_shared.logging import scrub


async def connect(settings: Settings) -> asyncpg.Connection:
    """A connection to ``TICKPIPE_DATABASE_URL``. Raises :class:`SystemExit` with a clear
    message (password masked) when the database cannot be reached."""
    dsn = settings.database_url.get_secret_value()
    try:
        return await connect_database(settings, timeout=10)
    except (OSError, asyncpg.PostgresError) as e:
        raise SystemExit(f"cannot connect to the database at {scrub(dsn)}: {e}") from None


async def stored_name(conn: asyncpg.Connection, instrument: str) -> str:
    """The name ``instrument`` is stored under.

    Dukascopy instruments are stored under their canonical symbol, whatever spelling the user
    types (``EUR-USD``, ``eur/usd`` → ``EURUSD``); Deriv and Polygon instruments under the
    source's own symbol (``R_50``, ``frxEURUSD``, ``C:EURUSD``), which canonicalising would
    break. A name the database knows exactly wins; otherwise the canonical form is used.
    """
    exact = await conn.fetchval(
        "SELECT instrument FROM instruments WHERE instrument = $1", instrument
    )
    return str(exact) if exact is not None else canonical_name(instrument)
