"""The writer stage: ``validated-batches`` → PostgreSQL/TimescaleDB (ticks into ``ticks``, source
candles into ``candles``).

Many units go into one transaction (up to ``TICKPIPE_WRITER_BATCH_ROWS`` rows or
``TICKPIPE_WRITER_BATCH_SECONDS``). Offsets are committed by the runtime only after
:meth:`Writer.process` returned, i.e. after the database commit. While the database is down
the runtime retries the same records with backoff and commits nothing. A database error that
waiting does not fix (:mod:`tickpipe_writer.db_errors`) is retried
``TICKPIPE_WRITER_DB_ERROR_ATTEMPTS`` times; then the records that still fail alone go to
failures, so no partition is held forever.

On TimescaleDB the continuous aggregates are not refreshed in the write path: each transaction
records its windows in ``ohlcv_pending`` and a background task refreshes them once the writer has
been idle for ``TICKPIPE_WRITER_OHLCV_REFRESH_SECONDS``, and at least every ten such periods
while it keeps writing (:mod:`tickpipe_writer.aggregates`). A unit's progress
event (and so a request's completion event) says its ticks are committed; the aggregates over a
backfilled window follow within those periods (``ohlcv_pending`` empty: every window refreshed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Literal

import asyncpg
import structlog
from tickpipe_shared.config import Settings
from tickpipe_shared.db.connect import create_pool
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.kafka.records import InRecord, OutRecord, RetryableError
from tickpipe_shared.kafka.topics import PROGRESS
from tickpipe_shared.kinds import Kind, KindError
from tickpipe_shared.metrics import CANDLES, TICKS, UNITS
from tickpipe_shared.wire.batch import Batch, BatchFormatError, CandleBatch, TickBatch, decode_batch
from tickpipe_shared.wire.progress import UnitFinished, encode_progress

from tickpipe_writer.aggregates import OhlcvRefresher
from tickpipe_writer.db_errors import AttemptCounter, PersistentDatabaseError, classify
from tickpipe_writer.metrics import DB_ERRORS, DB_WRITE_SECONDS, DUPLICATE_PARTS, ORPHAN_PARTS
from tickpipe_writer.store import write

log = structlog.get_logger()

FailureFactory = Callable[[InRecord, BaseException], OutRecord]
Outcome = Literal["stored", "empty", "suspect-empty"]


_OUTCOMES: dict[str, Outcome] = {
    "stored": "stored",
    "empty": "empty",
    "suspect-empty": "suspect-empty",
}


def outcome_of(state: str) -> Outcome:
    """The progress outcome of a finished unit's ledger state (``stored``, ``empty`` or
    ``suspect-empty``). Raises :class:`ValueError` for ``partial`` and anything else."""
    outcome = _OUTCOMES.get(state)
    if outcome is None:
        raise ValueError(f"ledger state {state!r} is not a finished unit")
    return outcome


def session_settings(settings: Settings) -> dict[str, str]:
    """Server settings of the writer's sessions.

    Custom plans always: the unit-replace ``DELETE`` has its instrument and window as
    parameters, and only a plan made for the actual values lets TimescaleDB exclude chunks and
    decompress just the unit's batches of a compressed chunk (a generic plan, which PostgreSQL
    picks after five executions of a prepared statement, would decompress the whole table).
    """
    return {
        "plan_cache_mode": "force_custom_plan",
        "timescaledb.max_tuples_decompressed_per_dml_transaction": str(
            settings.writer_max_decompressed_tuples
        ),
    }


class Writer:
    """Processor storing validated batches; it produces a ``unit`` progress event per finished
    unit, and failure records."""

    def __init__(self, settings: Settings, failure: FailureFactory) -> None:
        self.settings = settings
        self.failure = failure
        self.progress_topic = settings.topic(PROGRESS)
        self._pool: asyncpg.Pool | None = None
        self._ohlcv: OhlcvRefresher | None = None
        self._refresh_task: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()
        self._last_write = time.monotonic()
        self._attempts = AttemptCounter(settings.writer_db_error_attempts)

    def _idle_seconds(self) -> float:
        """Seconds since the last write committed (the background refresh waits for a pause)."""
        return time.monotonic() - self._last_write

    async def warm_up(self) -> None:
        """Connect, migrate and start the background refresh at the service's start, so that
        windows a crash left pending are refreshed without waiting for new records. Never
        raises: an unavailable database is met again (and retried) by the first write."""
        try:
            await self._connection_pool()
        except Exception as e:
            log.warning("database not ready at start; connecting on the first write",
                        error=f"{type(e).__name__}: {e}")  # fmt: skip

    async def _connection_pool(self) -> asyncpg.Pool:
        async with self._connecting:
            return await self._connect()

    async def _connect(self) -> asyncpg.Pool:
        if self._pool is None:
            pool = await create_pool(
                self.settings,
                min_size=1,
                max_size=2,
                command_timeout=120,
                server_settings=session_settings(self.settings),
            )
            try:
                async with pool.acquire() as conn:
                    await migrate(conn, self.settings.database_timescaledb)
                    self._ohlcv = await OhlcvRefresher.detect(conn)
            except BaseException:
                await pool.close()
                raise
            self._pool = pool
            if self._ohlcv is not None:  # TimescaleDB: refresh pending windows in the background
                self._refresh_task = asyncio.create_task(
                    self._ohlcv.run(
                        pool, self.settings.writer_ohlcv_refresh_seconds, self._idle_seconds
                    ),
                    name="ohlcv-refresh",
                )
        return self._pool

    def _on_write_error(
        self, error: Exception, consumed: Sequence[tuple[str, int, int]]
    ) -> Exception:
        """The exception that steers the runtime after a failed write of ``consumed``:
        :class:`RetryableError` (rewind, back off, retry) or the error itself (the runtime
        isolates the record at fault and sends it to failures)."""
        kind = classify(error)
        DB_ERRORS.labels(kind, type(error).__name__).inc()
        detail = f"{type(error).__name__}: {error}"
        if kind == "availability":
            return RetryableError(f"database unavailable: {detail}")
        if kind == "data":
            return error
        attempt = self._attempts.failed(consumed)
        if not self._attempts.exhausted(attempt):
            log.warning(
                "database refused the write; retrying",
                error=detail,
                attempt=attempt,
                of=self._attempts.attempts,
            )
            return RetryableError(f"database refused the write (attempt {attempt}): {detail}")
        log.error(
            "database error does not go away by retrying; failing the records that still fail",
            error=detail,
            attempts=attempt,
            records=len(consumed),
        )
        return PersistentDatabaseError(f"{detail} (gave up after {attempt} attempts)")

    async def process(self, records: Sequence[InRecord]) -> list[OutRecord]:
        """Write every decodable batch in one transaction; failure records for the others."""
        out: list[OutRecord] = []
        batches: list[Batch] = []
        for record in records:
            try:
                batch = decode_batch(record.value or b"")
                Kind.parse(batch.meta.unit.kind)  # a malformed kind fails its record, not the DB
            except (BatchFormatError, KindError) as e:
                out.append(self.failure(record, e))
                continue
            batches.append(batch)
        if not batches:
            return out
        started = time.monotonic()
        try:
            pool = await self._connection_pool()
        except Exception as e:  # connecting or migrating is never the data's fault
            DB_ERRORS.labels("availability", type(e).__name__).inc()
            raise RetryableError(f"database unavailable: {type(e).__name__}: {e}") from e
        consumed = [(r.topic, r.partition, r.offset) for r in records]
        try:
            async with pool.acquire() as conn:
                work = await write(conn, batches, record_windows=self._ohlcv is not None)
        except Exception as e:
            raise self._on_write_error(e, consumed) from e
        self._attempts.succeeded(consumed)
        self._last_write = time.monotonic()
        DB_WRITE_SECONDS.observe(time.monotonic() - started)
        DUPLICATE_PARTS.inc(work.duplicates)
        ORPHAN_PARTS.inc(work.orphans)
        ticks = sum(len(b.ticks) for b in work.inserts if isinstance(b, TickBatch))
        candles = sum(len(b.candles) for b in work.inserts if isinstance(b, CandleBatch))
        TICKS.labels("writer").inc(ticks)
        CANDLES.labels("writer").inc(candles)
        for uid, (state, batch) in [*work.ledger.items(), *work.reconfirmed.items()]:
            if state.state == "partial":
                continue
            if uid in work.ledger:
                UNITS.labels("writer", state.state).inc()
            # Progress for the tracker: produced by the runtime after this returns, i.e. after
            # the database commit and before the offset commit.
            event = UnitFinished(
                request_id=batch.meta.request_id,
                unit_key=batch.meta.unit.key,
                instrument=batch.meta.unit.instrument,
                outcome=outcome_of(state.state),
                rows=state.rows,
            )
            out.append(
                OutRecord(self.progress_topic, event.request_id.encode(), encode_progress(event))
            )
        log.info(
            "transaction committed",
            units=len(work.ledger),
            ticks=ticks,
            candles=candles,
            replaced=len(work.deletes),
            duplicate_parts=work.duplicates,
            orphan_parts=work.orphans,
            kept_over_suspect_empty=work.kept_over_suspect_empty,
            unit=[b.meta.unit.key for _, b in work.ledger.values()][:3],
        )
        return out
