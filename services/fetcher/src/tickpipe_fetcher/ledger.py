"""The planner's connection to the ingest log, for resumed requests (``skip_existing``).

Which units are done is the ledger's rule and query (:func:`tickpipe_shared.db.ledger.done_units`);
this module holds the planner's one connection and its failure policy: an unreachable ledger is
a :class:`RetryableError` (the request waits), a ledger not created yet has nothing done.
"""

from __future__ import annotations

from typing import Protocol

import asyncpg
import structlog
from tickpipe_shared.config import Settings
from tickpipe_shared.db import ledger
from tickpipe_shared.db.connect import connect
from tickpipe_shared.kafka.records import RetryableError
from tickpipe_shared.logging import scrub

log = structlog.get_logger()


class LedgerReader(Protocol):
    """Tells the planner which units are done."""

    async def done_units(self, instrument: str, kind: str, from_ms: int, to_ms: int) -> set[int]:
        """Start times (ms) of the done units of ``instrument``/``kind`` starting in
        ``[from_ms, to_ms)``. Raises :class:`RetryableError` when the ledger is unreachable."""
        ...


class IngestLedger:
    """:class:`LedgerReader` over PostgreSQL (``TICKPIPE_DATABASE_URL``): one connection,
    opened on first use and reopened after an error."""

    def __init__(self, settings: Settings, timeout_s: float = 10.0) -> None:
        self._settings = settings
        self._timeout = timeout_s
        self._conn: asyncpg.Connection | None = None

    async def done_units(self, instrument: str, kind: str, from_ms: int, to_ms: int) -> set[int]:
        """See :class:`LedgerReader`. A database without the ``ingest_log`` table (no writer
        ran yet) has no done units."""
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await connect(self._settings, timeout=self._timeout)
            return await ledger.done_units(
                self._conn, instrument, kind, from_ms, to_ms, timeout_s=self._timeout
            )
        except asyncpg.UndefinedTableError:
            log.warning("no ingest_log table yet: nothing to skip", instrument=instrument)
            return set()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            await self.close()
            # asyncpg messages name host and database, never the password; scrub anyway.
            raise RetryableError(
                f"ingest log unreachable for skip_existing: {type(e).__name__}: {scrub(str(e))}"
            ) from None

    async def close(self) -> None:
        """Close the connection (a later call reopens it)."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=self._timeout)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()
