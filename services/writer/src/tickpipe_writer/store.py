"""The writer's database I/O: one transaction per plan, binary COPY for the ticks."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
from tickpipe_shared.wire.batch import TickBatch

from tickpipe_writer.copy_binary import SIGNATURE, TICK_COPY_COLUMNS, TRAILER, encode_tick_rows
from tickpipe_writer.plan import LedgerState, Plan, UnitId, plan, unit_id

#: Errors that mean "the database is not there right now": retry, never fail the data.
RETRYABLE_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)


def is_data_error(error: BaseException) -> bool:
    """True when the database refused the *data* (bad value, constraint): the record is at
    fault and goes to failures. Any other database error (privileges, a read-only standby after
    a failover, a cancelled query, a schema problem) is the environment's: retry, never drain
    the topic into failures."""
    return isinstance(
        error, asyncpg.DataError | asyncpg.IntegrityConstraintViolationError
    ) or not isinstance(error, asyncpg.PostgresError)


def unit_lock_key(unit: UnitId) -> int:
    """A stable signed 64-bit advisory-lock key for a unit's database identity."""
    digest = hashlib.blake2b(f"{unit[0]}|{unit[1]}|{unit[2]}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_units(conn: asyncpg.Connection, units: Sequence[UnitId]) -> None:
    """Serialise writers per unit for the rest of the transaction.

    ``FOR UPDATE`` in :func:`read_ledger` only locks units the ledger already has: two writers
    (two replicas after a rebalance, or the same hour from both sources on two partitions)
    could otherwise both see a new unit, both skip the delete and both insert its ticks. Keys
    are taken in sorted order so that two transactions never wait on each other in a cycle.
    """
    keys = sorted({unit_lock_key(u) for u in units})
    if keys:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) WITH ORDINALITY AS t(k, n)"
            " ORDER BY n",
            keys,
        )


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


async def read_ledger(
    conn: asyncpg.Connection, units: Sequence[UnitId]
) -> dict[UnitId, LedgerState]:
    """Ingest-log rows of ``units`` (locked for update so concurrent writers serialise)."""
    if not units:
        return {}
    rows = await conn.fetch(
        """SELECT l.instrument, l.kind, l.unit_start, l.parts_written, l.part_count, l.rows,
                  l.payload_sha256
           FROM ingest_log l
           JOIN unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(instrument, kind, unit_start)
             USING (instrument, kind, unit_start)
           FOR UPDATE OF l""",
        [u[0] for u in units],
        [u[1] for u in units],
        [_dt(u[2]) for u in units],
    )
    return {
        (r["instrument"], r["kind"], int(r["unit_start"].timestamp() * 1000)): LedgerState(
            r["parts_written"], r["part_count"], r["rows"], r["payload_sha256"]
        )
        for r in rows
    }


async def write(conn: asyncpg.Connection, batches: Sequence[TickBatch]) -> Plan:
    """Store ``batches`` in one transaction: replace units, COPY ticks, update the ingest log.

    Returns the executed plan. Raises :class:`asyncpg.PostgresError` (the transaction is rolled
    back) or one of :data:`RETRYABLE_DB_ERRORS` when the database is unreachable.
    """
    async with conn.transaction():
        units = list(dict.fromkeys(unit_id(b.meta) for b in batches))
        await lock_units(conn, units)
        work = plan(batches, await read_ledger(conn, units))
        if work.deletes:
            await conn.execute(
                """DELETE FROM ticks t
                   USING unnest($1::text[], $2::timestamptz[], $3::timestamptz[])
                         AS u(instrument, s, e)
                   WHERE t.instrument = u.instrument AND t.ts >= u.s AND t.ts < u.e""",
                [d[0] for d in work.deletes],
                [_dt(d[1]) for d in work.deletes],
                [_dt(d[2]) for d in work.deletes],
            )
        scales = {b.meta.instrument: b.meta.price_scale for b in work.inserts}
        if scales:
            await conn.executemany(
                """INSERT INTO instruments (instrument, price_scale) VALUES ($1, $2)
                   ON CONFLICT (instrument) DO UPDATE SET price_scale = EXCLUDED.price_scale,
                       updated_at = now()
                   WHERE instruments.price_scale <> EXCLUDED.price_scale""",
                list(scales.items()),
            )
        if any(len(b.ticks) for b in work.inserts):
            buf = io.BytesIO()
            buf.write(SIGNATURE)
            for b in work.inserts:
                buf.write(encode_tick_rows(b))
            buf.write(TRAILER)
            buf.seek(0)
            await conn.copy_to_table(
                "ticks", source=buf, columns=list(TICK_COPY_COLUMNS), format="binary"
            )
        if work.ledger:
            await conn.executemany(
                """INSERT INTO ingest_log (instrument, kind, unit_start, unit_end, source, state,
                       rows, part_count, parts_written, payload_sha256, quality, decoder_version,
                       request_id, fetched_at, decoded_at, written_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14,
                           $15, now())
                   ON CONFLICT (instrument, kind, unit_start) DO UPDATE SET
                       unit_end = EXCLUDED.unit_end, source = EXCLUDED.source,
                       state = EXCLUDED.state, rows = EXCLUDED.rows,
                       part_count = EXCLUDED.part_count, parts_written = EXCLUDED.parts_written,
                       payload_sha256 = EXCLUDED.payload_sha256,
                       -- A unit continued from an earlier transaction adds its parts' counts.
                       quality = CASE WHEN $16::boolean THEN EXCLUDED.quality ELSE (
                           SELECT coalesce(jsonb_object_agg(k, n), '{}'::jsonb) FROM (
                               SELECT k, sum(v::bigint) AS n FROM (
                                   SELECT * FROM jsonb_each_text(ingest_log.quality)
                                   UNION ALL SELECT * FROM jsonb_each_text(EXCLUDED.quality)
                               ) AS q(k, v) GROUP BY k) AS s) END,
                       decoder_version = EXCLUDED.decoder_version,
                       request_id = EXCLUDED.request_id, fetched_at = EXCLUDED.fetched_at,
                       decoded_at = EXCLUDED.decoded_at, written_at = now()""",
                [
                    (
                        m.instrument,
                        m.kind,
                        _dt(m.unit_start_ms),
                        _dt(m.unit_end_ms),
                        m.source,
                        state.state,
                        state.rows,
                        state.part_count,
                        state.parts_written,
                        m.payload_sha256,
                        json.dumps(work.quality.get(uid, {})),
                        m.decoder_version,
                        m.request_id,
                        _dt(m.fetched_at_ms),
                        _dt(m.decoded_at_ms),
                        uid in work.restarted,
                    )
                    for uid, (state, b) in work.ledger.items()
                    for m in (b.meta,)
                ],
            )
        return work
