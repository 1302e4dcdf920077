"""The writer's database I/O: one transaction per plan, binary COPY for ticks and candles."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from tickpipe_shared.kinds import Kind
from tickpipe_shared.units import ms_to_dt
from tickpipe_shared.wire.batch import Batch, CandleBatch, TickBatch, rows_of

from tickpipe_writer.aggregates import record_pending
from tickpipe_writer.copy_binary import (
    CANDLE_COPY_COLUMNS,
    SIGNATURE,
    TICK_COPY_COLUMNS,
    TRAILER,
    encode_candle_rows,
    encode_tick_rows,
)
from tickpipe_writer.plan import LedgerState, Plan, UnitId, UnitWindow, plan, unit_id


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


async def read_ledger(
    conn: asyncpg.Connection, units: Sequence[UnitId]
) -> dict[UnitId, LedgerState]:
    """Ingest-log rows of ``units`` (locked for update so concurrent writers serialise)."""
    if not units:
        return {}
    rows = await conn.fetch(
        """SELECT l.instrument, l.kind, l.unit_start, l.parts_written, l.part_count, l.rows,
                  l.payload_sha256, l.state
           FROM ingest_log l
           JOIN unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(instrument, kind, unit_start)
             USING (instrument, kind, unit_start)
           FOR UPDATE OF l""",
        [u[0] for u in units],
        [u[1] for u in units],
        [ms_to_dt(u[2]) for u in units],
    )
    return {
        (r["instrument"], r["kind"], int(r["unit_start"].timestamp() * 1000)): LedgerState(
            r["parts_written"],
            r["part_count"],
            r["rows"],
            r["payload_sha256"],
            r["state"] == "suspect-empty",
        )
        for r in rows
    }


@dataclass(frozen=True, slots=True)
class InstrumentUpdate:
    """What a transaction learnt about an instrument: the largest price scale of its batches
    (``None``: none usable), its asset class (``None``: unknown) and its source codes."""

    instrument: str
    price_scale: int | None
    asset_class: str | None
    source_codes: dict[str, str]


def instrument_updates(batches: Sequence[Batch]) -> list[InstrumentUpdate]:
    """Per instrument of ``batches``, sorted by name (so that concurrent writers lock the
    ``instruments`` rows in one order). Pure.

    The scale of a batch with rows always counts; that of an empty batch only when it is known
    (not negative): Deriv and Polygon derive the scale from the prices, and an empty unit has
    none. The last non-empty ``asset_class`` wins; ``source_code`` is recorded per source.
    """
    scales: dict[str, int | None] = {}
    classes: dict[str, str | None] = {}
    codes: dict[str, dict[str, str]] = {}
    for b in batches:
        m = b.meta
        scale = scales.get(m.unit.instrument)
        if rows_of(b) or m.price_scale >= 0:
            scale = m.price_scale if scale is None else max(scale, m.price_scale)
        scales[m.unit.instrument] = scale
        if m.asset_class or m.unit.instrument not in classes:
            classes[m.unit.instrument] = m.asset_class or None
        mine = codes.setdefault(m.unit.instrument, {})
        if m.source_code:
            mine[m.unit.source] = m.source_code
    return [
        InstrumentUpdate(name, scales[name], classes[name], codes[name]) for name in sorted(scales)
    ]


#: Instruments upsert. ``price_scale`` keeps the largest scale seen: the derived scales of
#: Deriv and Polygon may differ from unit to unit, and every stored price is an exact decimal
#: at any scale at least its own, so the largest formats them all (exports, ``candles``)
#: without flapping. An instrument first seen without a usable scale is not inserted.
UPSERT_INSTRUMENTS = """
INSERT INTO instruments AS i (instrument, price_scale, asset_class, source_codes)
SELECT u.instrument, coalesce(u.price_scale, e.price_scale), u.asset_class,
       u.source_codes::jsonb
FROM unnest($1::text[], $2::smallint[], $3::text[], $4::text[])
     AS u(instrument, price_scale, asset_class, source_codes)
LEFT JOIN instruments e USING (instrument)
-- NOT NULL is checked before ON CONFLICT: a row without a scale takes the stored one.
WHERE u.price_scale IS NOT NULL OR e.instrument IS NOT NULL
ORDER BY u.instrument
ON CONFLICT (instrument) DO UPDATE SET
    price_scale = GREATEST(i.price_scale, EXCLUDED.price_scale),
    asset_class = coalesce(EXCLUDED.asset_class, i.asset_class),
    source_codes = i.source_codes || EXCLUDED.source_codes,
    updated_at = now()
WHERE i.price_scale < EXCLUDED.price_scale
   OR (EXCLUDED.asset_class IS NOT NULL AND i.asset_class IS DISTINCT FROM EXCLUDED.asset_class)
   OR NOT i.source_codes @> EXCLUDED.source_codes
"""


async def upsert_instruments(conn: asyncpg.Connection, batches: Sequence[Batch]) -> None:
    """Record the price scale, asset class and source codes of ``batches``' instruments."""
    updates = instrument_updates(batches)
    if not updates:
        return
    await conn.execute(
        UPSERT_INSTRUMENTS,
        [u.instrument for u in updates],
        [u.price_scale for u in updates],
        [u.asset_class for u in updates],
        [json.dumps(u.source_codes, sort_keys=True) for u in updates],
    )


#: Deletes one tick unit window: ``$1`` instrument, ``$2`` start, ``$3`` end. One statement per
#: unit with plain comparisons (not a join with an array of windows), so that the plan made for
#: the values (the writer's sessions force custom plans) excludes the other chunks and, inside a
#: compressed chunk, decompresses only the batches of the instrument's segment whose ``ts``
#: range meets the window.
DELETE_TICKS = "DELETE FROM ticks WHERE instrument = $1 AND ts >= $2 AND ts < $3"

#: Deletes one candle unit window: ``$1`` instrument, ``$2`` timeframe, ``$3`` side, ``$4``
#: start, ``$5`` end; one range of the primary key's index (and of the segment) per unit.
DELETE_CANDLES = """
DELETE FROM candles
WHERE instrument = $1 AND timeframe = $2 AND side = $3 AND ts >= $4 AND ts < $5
"""


async def delete_units(conn: asyncpg.Connection, windows: Sequence[UnitWindow]) -> None:
    """Delete the rows of ``windows``: ``ticks`` in the window for tick units, ``candles`` of
    the unit's timeframe and side in the window for candle units. Raises
    :class:`~tickpipe_shared.kinds.KindError` for a malformed kind."""
    ticks = [w for w in windows if w.kind == "ticks"]
    candles = [(w, Kind.parse(w.kind)) for w in windows if w.kind != "ticks"]
    if ticks:
        await conn.executemany(
            DELETE_TICKS, [(w.instrument, ms_to_dt(w.start_ms), ms_to_dt(w.end_ms)) for w in ticks]
        )
    if candles:
        await conn.executemany(
            DELETE_CANDLES,
            [
                (
                    w.instrument,
                    str(k.timeframe),
                    str(k.side),
                    ms_to_dt(w.start_ms),
                    ms_to_dt(w.end_ms),
                )
                for w, k in candles
            ],
        )


async def copy_rows(conn: asyncpg.Connection, batches: Sequence[Batch]) -> None:
    """Binary ``COPY`` of the ticks into ``ticks`` and the candles into ``candles``: one COPY
    per table, rows encoded straight from the numpy columns (:mod:`tickpipe_writer.copy_binary`).
    Raises :class:`ValueError` for a batch that cannot be encoded."""
    ticks = [b for b in batches if isinstance(b, TickBatch) and len(b.ticks)]
    candles = [b for b in batches if isinstance(b, CandleBatch) and len(b.candles)]
    for table, columns, chunks in (
        ("ticks", TICK_COPY_COLUMNS, [encode_tick_rows(b) for b in ticks]),
        ("candles", CANDLE_COPY_COLUMNS, [encode_candle_rows(b) for b in candles]),
    ):
        if not chunks:
            continue
        # One bytes object, not a file: asyncpg reads a file-like source through a class it
        # defines per call, whose closure keeps the file (the whole COPY stream) alive until the
        # cyclic garbage collector runs — tens of such streams at once under load — and hops to
        # a thread for every 512 KiB. A buffer is sent as it is (a memoryview: asyncpg would
        # take bytes for a path).
        payload = memoryview(b"".join((SIGNATURE, *chunks, TRAILER)))
        await conn.copy_to_table(table, source=payload, columns=list(columns), format="binary")


async def write(
    conn: asyncpg.Connection, batches: Sequence[Batch], *, record_windows: bool = False
) -> Plan:
    """Store ``batches`` (ticks and candles) in one transaction: replace units, COPY rows,
    update ``instruments`` and the ingest log and, with ``record_windows`` (TimescaleDB), the
    continuous-aggregate windows to refresh (``ohlcv_pending``,
    :func:`~tickpipe_writer.aggregates.record_pending`).

    Returns the executed plan. Raises :class:`asyncpg.PostgresError` (the transaction is rolled
    back), :class:`ValueError` for a batch that cannot be stored (malformed kind, negative
    scale, non-ASCII instrument) or one of
    :data:`~tickpipe_writer.db_errors.AVAILABILITY_ERRORS` when the database is unreachable.
    """
    async with conn.transaction():
        units = list(dict.fromkeys(unit_id(b.meta) for b in batches))
        await lock_units(conn, units)
        work = plan(batches, await read_ledger(conn, units))
        await delete_units(conn, work.deletes)
        await upsert_instruments(conn, work.inserts)
        await copy_rows(conn, work.inserts)
        if record_windows:
            await record_pending(conn, work)
        if work.ledger:
            await conn.executemany(
                UPSERT_LEDGER,
                [
                    (
                        m.unit.instrument,
                        m.unit.kind,
                        ms_to_dt(m.unit.start_ms),
                        ms_to_dt(m.unit.end_ms),
                        m.unit.source,
                        state.state,
                        state.rows,
                        state.part_count,
                        state.parts_written,
                        m.payload_sha256,
                        json.dumps(work.quality.get(uid, {})),
                        m.decoder_version,
                        m.request_id,
                        ms_to_dt(m.fetched_at_ms),
                        ms_to_dt(m.decoded_at_ms),
                        uid in work.restarted,
                    )
                    for uid, (state, b) in work.ledger.items()
                    for m in (b.meta,)
                ],
            )
        return work


UPSERT_LEDGER = """
INSERT INTO ingest_log (instrument, kind, unit_start, unit_end, source, state,
    rows, part_count, parts_written, payload_sha256, quality, decoder_version,
    request_id, fetched_at, decoded_at, written_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14, $15, now())
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
    decoded_at = EXCLUDED.decoded_at, written_at = now()
"""
