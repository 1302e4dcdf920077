"""The failure ledger: ``failures`` → ``ingest_log`` rows in state ``failed``.

A second processor in the writer process (consumer group ``<prefix>writer-failures``). Every
failure record that names a unit — its ``unit_key`` parses as ``source|instrument|kind|start``
(:func:`~tickpipe_shared.units.parse_unit_key`) — becomes the unit's ledger row with state
``failed``, the failing stage, the reason, the attempts and the request id, so that
``tickpipe status`` shows where the gaps are. Failures about something else (a rejected request
is keyed by its instrument) are skipped.

Rules, enforced by the single upsert in :func:`record_failures`:

* a ``failed`` row never replaces a ``stored``, ``empty`` or ``suspect-empty`` row: the unit's
  data (or its verified absence) is in the database, whatever a later attempt ran into;
* it replaces an earlier ``failed`` row (the latest failure wins) and a ``partial`` one (a unit
  that cannot complete is a gap; its parts' counts stay, so late parts still fit);
* the writer's upsert (:mod:`tickpipe_writer.store`) is unconditional, so a later successful
  write turns a ``failed`` row into ``stored``/``empty`` (``failure_*`` stay, as history).

Idempotent: a redelivered failure writes the same row again. One statement per batch (several
failures of one unit in a batch: the last one consumed wins). While the database is down the
batch is retried (:class:`RetryableError`), like the writer's. The processor never produces
records, failure records included: a failure about a failure would come back to it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg
import structlog
from tickpipe_shared.config import Settings
from tickpipe_shared.db.connect import create_pool
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.kafka.records import InRecord, OutRecord, RetryableError
from tickpipe_shared.metrics import UNITS
from tickpipe_shared.units import Unit, ms_to_dt, parse_unit_key
from tickpipe_shared.wire.failures import Failure

from tickpipe_writer.db_errors import AVAILABILITY_ERRORS

log = structlog.get_logger()

#: The stage name (and consumer group suffix) of this processor.
STAGE = "writer-failures"


@dataclass(frozen=True, slots=True)
class FailedUnit:
    """A ledger row to record: the unit and what its failure said."""

    unit: Unit
    stage: str
    reason: str
    attempts: int
    request_id: str | None


def failed_unit(failure: Failure) -> FailedUnit | None:
    """The ledger row of ``failure``, or ``None`` when it does not name a unit (or is this
    processor's own failure). Pure."""
    if failure.stage == STAGE:
        return None
    unit = parse_unit_key(failure.unit_key)
    if unit is None:
        return None
    return FailedUnit(
        unit, failure.stage, failure.reason, max(1, failure.attempt), failure.request_id
    )


def latest_per_unit(items: Sequence[FailedUnit]) -> list[FailedUnit]:
    """One row per database unit ``(instrument, kind, start)``: the last one of ``items``, in the
    order of first appearance (one upsert statement cannot touch a row twice). Pure."""
    last: dict[tuple[str, str, int], FailedUnit] = {}
    for item in items:
        u = item.unit
        last[(u.instrument, u.kind, u.start_ms)] = item
    return list(last.values())


UPSERT_FAILED = """
INSERT INTO ingest_log (instrument, kind, unit_start, unit_end, source, state, rows, part_count,
                        parts_written, request_id, failure_stage, failure_reason, attempts,
                        written_at)
SELECT u.instrument, u.kind, u.unit_start, u.unit_end, u.source, 'failed', 0, 0, 0,
       u.request_id, u.stage, u.reason, u.attempts, now()
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[],
            $6::text[], $7::text[], $8::text[], $9::integer[])
     AS u(instrument, kind, unit_start, unit_end, source, request_id, stage, reason, attempts)
ON CONFLICT (instrument, kind, unit_start) DO UPDATE SET
    state = 'failed',
    source = CASE WHEN ingest_log.state = 'failed' THEN EXCLUDED.source
                  ELSE ingest_log.source END,
    unit_end = CASE WHEN ingest_log.state = 'failed' THEN EXCLUDED.unit_end
                    ELSE ingest_log.unit_end END,
    request_id = EXCLUDED.request_id,
    failure_stage = EXCLUDED.failure_stage,
    failure_reason = EXCLUDED.failure_reason,
    attempts = EXCLUDED.attempts,
    written_at = now()
WHERE ingest_log.state IN ('failed', 'partial')
"""


def upsert_args(items: Sequence[FailedUnit]) -> list[list[object]]:
    """The array parameters of :data:`UPSERT_FAILED` for ``items`` (deduplicated by the caller)."""
    return [
        [i.unit.instrument for i in items],
        [i.unit.kind for i in items],
        [ms_to_dt(i.unit.start_ms) for i in items],
        [ms_to_dt(i.unit.end_ms) for i in items],
        [i.unit.source for i in items],
        [i.request_id for i in items],
        [i.stage for i in items],
        [i.reason for i in items],
        [i.attempts for i in items],
    ]


async def record_failures(conn: asyncpg.Connection, items: Sequence[FailedUnit]) -> int:
    """Upsert ``items`` as ``failed`` rows in one statement; returns how many rows were written
    (the others kept their ``stored``/``empty``/``suspect-empty`` state). Raises
    :class:`asyncpg.PostgresError` or one of :data:`AVAILABILITY_ERRORS`."""
    rows = latest_per_unit(items)
    if not rows:
        return 0
    status = await conn.execute(UPSERT_FAILED, *upsert_args(rows))
    return int(str(status).rsplit(" ", 1)[-1]) if status else 0


PoolFactory = Callable[[], Awaitable[asyncpg.Pool]]


class FailureLedger:
    """Processor of the ``failures`` topic: records failed units in the ingest log."""

    def __init__(self, settings: Settings, pool_factory: PoolFactory | None = None) -> None:
        self.settings = settings
        self._pool_factory = pool_factory or self._create_pool
        self._pool: asyncpg.Pool | None = None

    async def _create_pool(self) -> asyncpg.Pool:
        pool = await create_pool(self.settings, min_size=1, max_size=1, command_timeout=60)
        async with pool.acquire() as conn:
            await migrate(conn, self.settings.database_timescaledb)
        return pool

    async def _connection_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await self._pool_factory()
        return self._pool

    @staticmethod
    def failed_units(records: Sequence[InRecord]) -> list[FailedUnit]:
        """The units ``records`` report as failed; undecodable records are logged and skipped."""
        out: list[FailedUnit] = []
        for record in records:
            try:
                failure = Failure.from_json(record.value or b"")
            except ValueError as e:
                log.warning(
                    "not a failure record, skipped",
                    error=str(e),
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                )
                continue
            item = failed_unit(failure)
            if item is not None:
                out.append(item)
        return out

    async def process(self, records: Sequence[InRecord]) -> list[OutRecord]:
        """Record the batch's failed units in one statement; produces nothing."""
        items = latest_per_unit(self.failed_units(records))
        if not items:
            return []
        try:
            pool = await self._connection_pool()
            async with pool.acquire() as conn:
                written = await self._record(conn, items)
        except AVAILABILITY_ERRORS as e:
            raise RetryableError(f"database unavailable: {type(e).__name__}: {e}") from e
        UNITS.labels(STAGE, "failed").inc(written)
        log.info(
            "failed units recorded",
            units=len(items),
            written=written,
            kept=len(items) - written,
            unit=[i.unit.key for i in items][:3],
        )
        return []

    @staticmethod
    async def _record(conn: asyncpg.Connection, items: Sequence[FailedUnit]) -> int:
        """One statement for the batch; if the database refuses it (not an outage), row by row
        so that one bad row (e.g. an instrument name the database rejects) skips only itself."""
        try:
            return await record_failures(conn, items)
        except AVAILABILITY_ERRORS:
            raise
        except asyncpg.PostgresError as e:
            log.warning("batch refused, recording failed units one by one", error=str(e))
        written = 0
        for item in items:
            try:
                written += await record_failures(conn, [item])
            except AVAILABILITY_ERRORS:
                raise
            except asyncpg.PostgresError as e:
                log.error("failed unit not recorded", unit=item.unit.key, error=str(e))
        return written
