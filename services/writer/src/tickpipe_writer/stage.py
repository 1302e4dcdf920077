"""The writer stage: ``validated-batches`` → PostgreSQL/TimescaleDB (ticks into ``ticks``, source
candles into ``candles``).

Many units go into one transaction (up to ``TICKPIPE_WRITER_BATCH_ROWS`` rows or
``TICKPIPE_WRITER_BATCH_SECONDS``). Offsets are committed by the runtime only after
:meth:`Writer.process` returned, i.e. after the database commit. While the database is down
the runtime retries the same records with backoff and commits nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Literal

import asyncpg
import structlog
from tickpipe_shared.config import Settings
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.kafka.records import InRecord, OutRecord, RetryableError
from tickpipe_shared.kafka.topics import PROGRESS
from tickpipe_shared.kinds import Kind, KindError
from tickpipe_shared.metrics import CANDLES, TICKS, UNITS
from tickpipe_shared.wire.batch import Batch, BatchFormatError, CandleBatch, TickBatch, decode_batch
from tickpipe_shared.wire.progress import UnitFinished, encode_progress

from tickpipe_writer.aggregates import OhlcvRefresher
from tickpipe_writer.metrics import DB_WRITE_SECONDS, DUPLICATE_PARTS, ORPHAN_PARTS
from tickpipe_writer.store import RETRYABLE_DB_ERRORS, is_data_error, write

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


class Writer:
    """Processor storing validated batches; it produces a ``unit`` progress event per finished
    unit, and failure records."""

    def __init__(self, settings: Settings, failure: FailureFactory) -> None:
        self.settings = settings
        self.failure = failure
        self.progress_topic = settings.topic(PROGRESS)
        self._pool: asyncpg.Pool | None = None
        self._ohlcv: OhlcvRefresher | None = None

    async def _connection_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            dsn = self.settings.database_url.get_secret_value()
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2, command_timeout=120)
            try:
                async with pool.acquire() as conn:
                    await migrate(conn)
                    self._ohlcv = await OhlcvRefresher.detect(conn)
            except BaseException:
                await pool.close()
                raise
            self._pool = pool
        return self._pool

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
            raise RetryableError(f"database unavailable: {type(e).__name__}: {e}") from e
        try:
            async with pool.acquire() as conn:
                work = await write(conn, batches)
        except RETRYABLE_DB_ERRORS as e:
            raise RetryableError(f"database unavailable: {type(e).__name__}: {e}") from e
        except Exception as e:
            if is_data_error(e):
                raise  # the runtime isolates the record at fault and sends it to failures
            raise RetryableError(f"database refused the write: {type(e).__name__}: {e}") from e
        DB_WRITE_SECONDS.observe(time.monotonic() - started)
        if self._ohlcv is not None:  # TimescaleDB: make the written ticks visible in ohlcv_*
            await self._ohlcv.after_commit(pool, work)
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
