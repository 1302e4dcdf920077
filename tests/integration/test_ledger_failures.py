"""Failed units in the ingest log, against the local PostgreSQL: recorded, never over a stored
or empty unit, replaced by a later store, duplicates harmless."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import numpy as np
import pytest
from tickpipe_shared.columns import Ticks
from tickpipe_shared.config import Settings
from tickpipe_shared.units import HOUR_MS, Unit
from tickpipe_shared.wire.batch import BatchMeta, TickBatch
from tickpipe_shared.wire.failures import Failure
from tickpipe_writer.failures import FailedUnit, FailureLedger, record_failures
from tickpipe_writer.store import write

pytestmark = pytest.mark.integration

H0 = int(datetime(2021, 3, 1, 10, tzinfo=UTC).timestamp() * 1000)


def batch(n: int, start: int = H0, *, part: int = 0, parts: int = 1) -> TickBatch:
    ts = start + part * 1000 * n + np.arange(n, dtype=np.int64) * 1000
    bid = 110_123 + np.arange(n, dtype=np.int64)
    meta = BatchMeta(
        unit=Unit("dukascopy-bi5", "USDJPY", "ticks", start, start + HOUR_MS),
        part=part,
        part_count=parts,
        rows=n,
        price_scale=3,
        payload_sha256="a" * 64,
        request_id="r-ok",
        fetched_at_ms=start,
        decoded_at_ms=start,
    )
    return TickBatch(meta, Ticks(ts, bid, bid + 7, np.full(n, 1.0), np.full(n, 0.5)))


def failed(
    start: int = H0,
    reason: str = "HTTP 503 after 5 attempts",
    attempts: int = 5,
    stage: str = "fetcher",
    source: str = "dukascopy-bi5",
) -> FailedUnit:
    return FailedUnit(
        Unit(source, "USDJPY", "ticks", start, start + HOUR_MS), stage, reason, attempts, "r-failed"
    )


async def row(conn: asyncpg.Connection, start: int = H0) -> dict[str, Any]:
    r = await conn.fetchrow(
        "SELECT * FROM ingest_log WHERE instrument = 'USDJPY' AND unit_start = $1",
        datetime.fromtimestamp(start / 1000, UTC),
    )
    assert r is not None
    return dict(r)


async def rows(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM ingest_log"))


async def test_schema_accepts_the_new_states_only(conn: asyncpg.Connection) -> None:
    cols = {
        r["column_name"]: r["is_nullable"]
        for r in await conn.fetch(
            "SELECT column_name, is_nullable FROM information_schema.columns "
            "WHERE table_name = 'ingest_log'"
        )
    }
    for c in (
        "payload_sha256",
        "decoder_version",
        "fetched_at",
        "decoded_at",
        "failure_stage",
        "failure_reason",
        "attempts",
    ):
        assert cols[c] == "YES", c
    assert cols["state"] == "NO" and cols["rows"] == "NO"
    insert = """INSERT INTO ingest_log (instrument, kind, unit_start, unit_end, source, state,
                    rows, part_count, parts_written)
                VALUES ('X', 'ticks', $1, $1::timestamptz + interval '1 hour', 's', $2, 0, 1, 1)"""
    at = datetime(2021, 3, 1, tzinfo=UTC)
    await conn.execute(insert, at, "suspect-empty")
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(insert, at.replace(hour=1), "lost")


async def test_failed_unit_is_recorded(conn: asyncpg.Connection) -> None:
    assert await record_failures(conn, [failed()]) == 1
    r = await row(conn)
    assert r["state"] == "failed" and r["rows"] == 0
    assert r["failure_stage"] == "fetcher" and r["attempts"] == 5
    assert r["failure_reason"] == "HTTP 503 after 5 attempts" and r["request_id"] == "r-failed"
    assert r["unit_end"] - r["unit_start"] == (
        datetime.fromtimestamp(HOUR_MS / 1000, UTC) - datetime.fromtimestamp(0, UTC)
    )
    assert r["payload_sha256"] is None and r["decoder_version"] is None
    assert r["fetched_at"] is None and r["decoded_at"] is None and r["source"] == "dukascopy-bi5"


async def test_duplicates_are_harmless_and_the_latest_failure_wins(
    conn: asyncpg.Connection,
) -> None:
    await record_failures(conn, [failed(), failed()])
    await record_failures(conn, [failed()])
    assert await rows(conn) == 1
    await record_failures(conn, [failed(reason="bad payload", attempts=1, stage="decoder")])
    r = await row(conn)
    assert (r["state"], r["failure_stage"], r["failure_reason"], r["attempts"]) == (
        "failed",
        "decoder",
        "bad payload",
        1,
    )
    assert await rows(conn) == 1


async def test_failure_never_overwrites_stored_empty_or_suspect_empty(
    conn: asyncpg.Connection,
) -> None:
    await write(conn, [batch(5), batch(0, H0 + HOUR_MS)])
    await conn.execute(
        """INSERT INTO ingest_log (instrument, kind, unit_start, unit_end, source, state, rows,
               part_count, parts_written, payload_sha256, decoder_version, fetched_at, decoded_at)
           VALUES ('USDJPY', 'ticks', $1, $1::timestamptz + interval '1 hour', 'dukascopy-json',
                   'suspect-empty', 0, 1, 1, 'b', 'd1', now(), now())""",
        datetime.fromtimestamp((H0 + 2 * HOUR_MS) / 1000, UTC),
    )
    before = [await row(conn, H0 + k * HOUR_MS) for k in range(3)]
    written = await record_failures(conn, [failed(H0 + k * HOUR_MS) for k in range(3)])
    assert written == 0
    after = [await row(conn, H0 + k * HOUR_MS) for k in range(3)]
    assert after == before
    assert [r["state"] for r in after] == ["stored", "empty", "suspect-empty"]
    assert all(r["failure_stage"] is None for r in after)


async def test_a_later_store_overwrites_a_failed_row(conn: asyncpg.Connection) -> None:
    await record_failures(conn, [failed()])
    await write(conn, [batch(5)])
    r = await row(conn)
    assert (r["state"], r["rows"], r["payload_sha256"]) == ("stored", 5, "a" * 64)
    assert r["request_id"] == "r-ok"
    assert r["failure_stage"] == "fetcher"  # kept as history
    assert int(await conn.fetchval("SELECT count(*) FROM ticks")) == 5
    # ...and a failure arriving after that (a lagging consumer) changes nothing.
    assert await record_failures(conn, [failed()]) == 0
    assert (await row(conn))["state"] == "stored"


async def test_a_partial_unit_that_fails_is_failed_and_can_still_complete(
    conn: asyncpg.Connection,
) -> None:
    await write(conn, [batch(3, part=0, parts=2)])
    assert (await row(conn))["state"] == "partial"
    assert await record_failures(conn, [failed(stage="writer", attempts=1)]) == 1
    r = await row(conn)
    assert (r["state"], r["rows"], r["parts_written"]) == ("failed", 3, 1)
    await write(conn, [batch(3, part=1, parts=2)])
    r = await row(conn)
    assert (r["state"], r["rows"], r["parts_written"]) == ("stored", 6, 2)
    assert int(await conn.fetchval("SELECT count(*) FROM ticks")) == 6


async def test_write_over_a_failed_row_starting_at_a_later_part(
    conn: asyncpg.Connection,
) -> None:
    await record_failures(conn, [failed()])
    # A failed row has no payload hash, so a later part without its part 0 is an orphan: it is
    # not stored and the unit stays failed (storing it would make it look complete).
    work = await write(conn, [batch(3, part=1, parts=2)])
    assert work.orphans == 1
    r = await row(conn)
    assert r["state"] == "failed"
    assert await conn.fetchval("SELECT count(*) FROM ticks") == 0


async def test_processor_against_the_database(dsn: str, conn: asyncpg.Connection) -> None:
    processor = FailureLedger(Settings(database_url=dsn))  # type: ignore[arg-type]

    class Rec:
        topic, partition, headers = "tickpipe.failures", 0, ()

        def __init__(self, offset: int, unit_key: str, stage: str = "fetcher") -> None:
            self.offset, self.key = offset, unit_key.encode()
            self.value = Failure(
                stage=stage, reason="gave up", error_class="E", unit_key=unit_key, attempt=2
            ).to_json()

    await write(conn, [batch(4)])
    records = [
        Rec(0, "dukascopy-bi5|USDJPY|ticks|2021-03-01T10:00:00Z"),  # stored: kept
        Rec(1, "dukascopy-bi5|USDJPY|ticks|2021-03-01T11:00:00Z"),
        Rec(2, "USDJPY", stage="fetcher-planner"),
        Rec(3, "dukascopy-bi5|USDJPY|ticks|2021-03-01T11:00:00Z", stage="validator"),
    ]
    try:
        assert await processor.process(records) == []
        assert await processor.process(records) == []  # redelivered
    finally:
        if processor._pool is not None:
            await processor._pool.close()
    states = {
        r["unit_start"].hour: (r["state"], r["failure_stage"])
        for r in await conn.fetch("SELECT * FROM ingest_log ORDER BY unit_start")
    }
    assert states == {10: ("stored", None), 11: ("failed", "validator")}
