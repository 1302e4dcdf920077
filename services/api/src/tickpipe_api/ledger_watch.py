"""Following the ledger's change notifications (``LISTEN tickpipe_ledger``, migration 0008).

Every write of a unit's ``ingest_log`` row, and every change of an instrument's price scale, is
announced by the database when it commits. The API's answer cache uses this to serve a cached
answer without re-reading the ledger state on each request: an answer stays valid while no
notification about a unit it covers has arrived (:class:`tickpipe_api.cache.AnswerCache`).

Delivery guarantees: PostgreSQL delivers notifications of committed transactions, in commit
order, to every listening session; none are delivered while the session is down. So the watch
is :attr:`LedgerWatch.live` only while its session is connected, and a (re)connect counts as
"everything changed" (:attr:`LedgerWatch.epoch` moves). A write becomes visible to cached
answers after its commit plus the notification's delivery (milliseconds on one network).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import structlog
from tickpipe_shared.config import Settings
from tickpipe_shared.db.connect import connect
from tickpipe_shared.logging import scrub

log = structlog.get_logger()

CHANNEL = "tickpipe_ledger"
#: The listening session's application_name (pg_stat_activity shows who listens).
APPLICATION_NAME = "tickpipe-api-ledger-watch"
#: Seconds between liveness probes of the listening session.
PROBE_EVERY_S = 5.0


@dataclass(frozen=True, slots=True)
class LedgerChange:
    """What a notification says changed: ``instrument`` (``None``: everything) and the unit's
    window ``[start_ms, end_ms)`` in epoch ms UTC (``None``: the whole instrument)."""

    instrument: str | None
    start_ms: int | None = None
    end_ms: int | None = None

    def touches(self, instrument: str, lo_ms: int, hi_ms: int) -> bool:
        """True when this change may alter an answer over ``instrument``'s ``[lo_ms, hi_ms)``."""
        if self.instrument is None:
            return True
        if self.instrument != instrument:
            return False
        if self.start_ms is None or self.end_ms is None:
            return True
        return self.start_ms < hi_ms and lo_ms < self.end_ms


def parse_change(payload: str) -> LedgerChange:
    """The :class:`LedgerChange` of a notification payload; anything unreadable counts as
    "everything changed" (safe: it only costs cache misses)."""
    try:
        data = json.loads(payload)
        if data.get("all"):
            return LedgerChange(None)
        instrument = str(data["instrument"])
        start, end = data.get("start"), data.get("end")
        if start is None or end is None:
            return LedgerChange(instrument)
        return LedgerChange(instrument, int(start), int(end))
    except (ValueError, KeyError, TypeError, AttributeError):
        return LedgerChange(None)


@dataclass(frozen=True, slots=True)
class Stamp:
    """When an answer's ledger state was read: the watch's epoch and the instrument's change
    count then. An answer may be remembered only if the stamp is still current when it is."""

    epoch: int
    changes: int


class LedgerWatch:
    """One listening session on ``settings``' database (its TLS and password settings too),
    reconnecting with backoff; calls ``on_change`` for every change (and ``LedgerChange(None)``
    on every reconnect)."""

    def __init__(self, settings: Settings, on_change: Callable[[LedgerChange], object]) -> None:
        self.settings = settings
        self.on_change = on_change
        self.epoch = 0
        self._live = False
        self._changes: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def live(self) -> bool:
        """True while the session listens: only then is "no notification" "no change"."""
        return self._live

    def stamp(self, instrument: str) -> Stamp | None:
        """The current :class:`Stamp` of ``instrument``; ``None`` while the watch is down."""
        if not self._live:
            return None
        return Stamp(self.epoch, self._changes.get(instrument, 0))

    def current(self, instrument: str, stamp: Stamp | None) -> bool:
        """True when nothing about ``instrument`` changed since ``stamp`` was taken."""
        return (
            stamp is not None
            and self._live
            and stamp.epoch == self.epoch
            and stamp.changes == self._changes.get(instrument, 0)
        )

    def _changed(self, change: LedgerChange) -> None:
        if change.instrument is None:
            self.epoch += 1
            self._changes.clear()
        else:
            self._changes[change.instrument] = self._changes.get(change.instrument, 0) + 1
        self.on_change(change)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._changed(parse_change(payload))

    def start(self) -> None:
        """Start listening in the background."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._live = False

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                conn = await connect(
                    self.settings,
                    timeout=10,
                    server_settings={"application_name": APPLICATION_NAME},
                )
            except (OSError, asyncpg.PostgresError, TimeoutError) as e:
                log.warning(
                    "ledger watch cannot connect; retrying",
                    dsn=scrub(self.settings.database_url.get_secret_value()),
                    error=str(e),
                )
            else:
                try:
                    await self._listen(conn)
                    delay = 0.5
                except (OSError, asyncpg.PostgresError, TimeoutError) as e:
                    log.warning("ledger watch lost its session; retrying", error=str(e))
                finally:
                    self._live = False
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _listen(self, conn: asyncpg.Connection) -> None:
        """Listen on ``conn`` until the session ends (returns) or fails a probe (raises)."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        await conn.add_listener(CHANNEL, self._notified)
        # Whatever was cached before this session may have changed unseen.
        self._live = True
        self._changed(LedgerChange(None))
        log.info("ledger watch listening", channel=CHANNEL)
        while not lost.is_set():
            # A session dropped without a FIN would miss notifications unseen: probe it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), PROBE_EVERY_S)
            if not lost.is_set():
                await conn.fetchval("SELECT 1", timeout=PROBE_EVERY_S)
        log.warning("ledger watch lost its session; cached answers revalidate")
