"""Reads the ingest log for resumed requests (``skip_existing``): which units are done.

A unit is done when its ``ingest_log`` row (PK ``(instrument, kind, unit_start)``, schema in
``shared/src/tickpipe_shared/db/migrations/``) has state ``stored`` or ``empty`` and was
downloaded after the unit had closed (``fetched_at >= unit_end``): a closed period never
changes, so its data is final. Units downloaded while still open, ``partial``, ``failed`` and
``suspect-empty`` units are not done: a resumed request fetches them again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

import asyncpg
import structlog
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.records import RetryableError
from tickpipe_shared.logging import scrub

log = structlog.get_logger()

_DONE = """
SELECT unit_start FROM ingest_log
WHERE instrument = $1 AND kind = $2 AND unit_start >= $3 AND unit_start < $4
  AND state IN ('stored', 'empty') AND fetched_at IS NOT NULL AND fetched_at >= unit_end
"""


class LedgerReader(Protocol):
    """Tells the planner which units are done."""

    async def done_units(self, instrument: str, kind: str, from_ms: int, to_ms: int) -> set[int]:
        """Start times (ms) of the done units of ``instrument``/``kind`` starting in
        ``[from_ms, to_ms)``. Raises :class:`RetryableError` when the ledger is unreachable."""
        ...


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _dt(ms: int) -> datetime:
    return _EPOCH + ms * _MS


def _ms(dt: datetime) -> int:
    return (dt - _EPOCH) // _MS


class IngestLedger:
    """:class:`LedgerReader` over PostgreSQL (``TICKPIPE_DATABASE_URL``): one connection,
    opened on first use and reopened after an error."""

    def __init__(self, settings: Settings, timeout_s: float = 10.0) -> None:
        self._dsn = settings.database_url
        self._timeout = timeout_s
        self._conn: asyncpg.Connection | None = None

    async def done_units(self, instrument: str, kind: str, from_ms: int, to_ms: int) -> set[int]:
        """See :class:`LedgerReader`. A database without the ``ingest_log`` table (no writer
        ran yet) has no done units."""
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(
                    self._dsn.get_secret_value(), timeout=self._timeout
                )
            rows = await self._conn.fetch(
                _DONE, instrument, kind, _dt(from_ms), _dt(to_ms), timeout=self._timeout
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
        return {_ms(r["unit_start"]) for r in rows}

    async def close(self) -> None:
        """Close the connection (a later call reopens it)."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=self._timeout)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()
