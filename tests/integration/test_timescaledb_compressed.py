"""The writer on a real TimescaleDB (2.28, built by ``bin/bootstrap``) once the ticks chunks are
compressed — the normal state of an installation older than the compression policy's 7 days.

A unit written again (re-request, replay, redelivery) into a compressed chunk must replace
itself exactly, decompress only its own batches (TimescaleDB's
``max_tuples_decompressed_per_dml_transaction`` is set far below the table's size to prove it),
and refresh its continuous-aggregate windows. A database error that waiting does not fix must
not hold the partition: bounded attempts, then the records at fault go to failures (those two
tests run on the plain-PostgreSQL pass too).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from support.database import refuse_inserts_sql, scratch_database
from support.ohlcv import hour_batch, stored_ticks
from support.records import Rec
from support.storage import on_timescaledb, skip_unless_timescaledb, storage_mode
from support.timescaledb import aggregates_caught_up, assert_aggregates_equal_raw
from tickpipe_shared.config import Settings
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.kafka.records import RetryableError
from tickpipe_shared.units import HOUR_MS
from tickpipe_shared.wire.batch import TickBatch, encode_batch
from tickpipe_writer.db_errors import PersistentDatabaseError
from tickpipe_writer.stage import Writer

pytestmark = pytest.mark.integration

DAY0 = int(datetime(2021, 3, 1, tzinfo=UTC).timestamp() * 1000)
HOURS = 72  # three one-day chunks
TICKS_PER_HOUR = 1500
INSTRUMENTS = (("EURUSD", 5, 112_345), ("USDJPY", 3, 110_123))


def unit(instrument: str, hour: int, *, seed: int) -> TickBatch:
    _, scale, first = next(i for i in INSTRUMENTS if i[0] == instrument)
    return hour_batch(
        instrument, DAY0 + hour * HOUR_MS, TICKS_PER_HOUR, seed=seed, scale=scale,
        first_point=first, sha=f"{seed:064x}",
    )  # fmt: skip


@pytest.fixture
async def tsdb(infra: Settings) -> AsyncIterator[tuple[Settings, asyncpg.Connection]]:
    """A scratch database with this run's storage; settings pointing at it."""
    async with scratch_database(infra, prefix="tp_tsdb") as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            report = await migrate(conn, storage_mode())
            assert report.timescaledb == on_timescaledb()
            settings = infra.model_copy(update={"database_url": infra.database_url.__class__(dsn)})
            yield settings, conn
        finally:
            await conn.close()


async def ticks_of(conn: asyncpg.Connection, instrument: str) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(
        """SELECT (extract(epoch FROM ts) * 1000)::bigint AS ms, bid_points / s.f, ask_points / s.f,
                  bid_volume, ask_volume
           FROM ticks CROSS JOIN (SELECT 10::float8 ^ price_scale AS f FROM instruments
                                  WHERE instrument = $1) AS s
           WHERE instrument = $1 ORDER BY ts""",
        instrument,
    )
    return [tuple(r) for r in rows]


def expected(batches: Sequence[TickBatch], instrument: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in stored_ticks(batches).get(instrument, [])]


async def compress_all(conn: asyncpg.Connection, table: str = "ticks") -> int:
    chunks = await conn.fetch(f"SELECT compress_chunk(c, true) FROM show_chunks('{table}') c")
    return len(chunks)


async def write_in_transactions(writer: Writer, batches: Sequence[TickBatch], per: int) -> None:
    for i in range(0, len(batches), per):
        records = [Rec(encode_batch(b), offset=i + j) for j, b in enumerate(batches[i : i + per])]
        assert await writer.process(records)  # one progress event per finished unit


async def test_units_written_again_into_compressed_chunks_replace_themselves(
    tsdb: tuple[Settings, asyncpg.Connection],
) -> None:
    skip_unless_timescaledb()
    settings, conn = tsdb
    first = [unit(name, h, seed=h * 2 + k) for h in range(HOURS) for k, (name, *_) in
             enumerate(INSTRUMENTS)]  # fmt: skip
    await write_in_transactions(Writer(settings, _no_failures), first, per=24)
    assert await compress_all(conn) == 3
    compressed = await conn.fetchval(
        "SELECT count(*) FROM timescaledb_information.chunks "
        "WHERE hypertable_name = 'ticks' AND is_compressed"
    )
    assert compressed == 3

    # A day re-requested with other data, one transaction per four units. The limit is a
    # fraction of the table (216 000 rows): deleting a unit may decompress only its batches.
    limit = 4 * TICKS_PER_HOUR * 3
    writer = Writer(settings.model_copy(update={"writer_max_decompressed_tuples": limit}),
                    _no_failures)  # fmt: skip
    again = [unit("EURUSD", h, seed=1000 + h) for h in range(24, 48)]
    await write_in_transactions(writer, again, per=4)

    assert await ticks_of(conn, "EURUSD") == expected(first + again, "EURUSD")
    assert await ticks_of(conn, "USDJPY") == expected(first, "USDJPY")
    rows = await conn.fetchval(
        "SELECT sum(rows) FROM ingest_log WHERE instrument = 'EURUSD' AND state = 'stored'"
    )
    assert rows == HOURS * TICKS_PER_HOUR

    # The writer refreshed the rewritten windows (in the background, a moment later): the
    # materialized candles of every aggregate equal the candles computed from the raw ticks.
    await aggregates_caught_up(conn)
    for instrument, *_ in INSTRUMENTS:
        await assert_aggregates_equal_raw(conn, instrument)


def _no_failures(record: Any, error: BaseException) -> Any:
    raise AssertionError(f"unexpected failure record: {error!r}")


async def test_a_database_error_that_does_not_go_away_is_bounded(
    tsdb: tuple[Settings, asyncpg.Connection],
) -> None:
    """A configured limit (here: a trigger raising SQLSTATE 54000, program limit exceeded, for
    one instrument) fails the write every time: retried ``writer_db_error_attempts`` times,
    then the runtime's isolation sends only the record at fault to failures."""
    settings, conn = tsdb
    await conn.execute(refuse_inserts_sql("GBPJPY"))
    writer = Writer(settings.model_copy(update={"writer_db_error_attempts": 3}), _no_failures)
    good = Rec(encode_batch(unit("EURUSD", 0, seed=1)), offset=0)
    bad_batch = unit("EURUSD", 1, seed=2)
    bad_meta = replace(bad_batch.meta, unit=replace(bad_batch.meta.unit, instrument="GBPJPY"))
    bad = Rec(encode_batch(TickBatch(bad_meta, bad_batch.ticks)), offset=1)

    for attempt in (1, 2):
        with pytest.raises(RetryableError, match=f"attempt {attempt}.*row limit reached"):
            await writer.process([good, bad])
    with pytest.raises(PersistentDatabaseError, match="gave up after 3 attempts"):
        await writer.process([good, bad])
    # The runtime now isolates the records one by one: the good one is stored, the bad one
    # fails again at once (its attempts are spent) and becomes a failure record.
    assert await writer.process([good])
    with pytest.raises(PersistentDatabaseError, match="ProgramLimitExceededError"):
        await writer.process([bad])
    assert len(await ticks_of(conn, "EURUSD")) == TICKS_PER_HOUR
    assert await ticks_of(conn, "GBPJPY") == []


async def test_availability_errors_are_retried_without_bound(
    tsdb: tuple[Settings, asyncpg.Connection],
) -> None:
    """Privileges revoked (an operator's mistake) affect every record alike: never drained
    into failures, however many attempts; once granted again the same records are written."""
    settings, conn = tsdb
    writer = Writer(settings.model_copy(update={"writer_db_error_attempts": 1}), _no_failures)
    record = Rec(encode_batch(unit("EURUSD", 0, seed=1)), offset=0)
    await conn.execute("REVOKE ALL ON ingest_log FROM CURRENT_USER")
    for _ in range(3):
        with pytest.raises(RetryableError, match="database unavailable: InsufficientPrivilege"):
            await writer.process([record])
    await conn.execute("GRANT ALL ON ingest_log TO CURRENT_USER")
    assert await writer.process([record])
    assert len(await ticks_of(conn, "EURUSD")) == TICKS_PER_HOUR
