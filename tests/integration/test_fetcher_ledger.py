"""Resume (``skip_existing``) against the real ingest log: which units are done, and the planner
leaving them out. Needs the local stack's PostgreSQL (a scratch database per test)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from pydantic import SecretStr
from tickpipe_fetcher.ledger import IngestLedger
from tickpipe_fetcher.planner import Planner
from tickpipe_shared.config import Settings
from tickpipe_shared.instruments import InstrumentRegistry
from tickpipe_shared.kafka.records import OutRecord, RetryableError
from tickpipe_shared.wire.fetch_units import FetchUnit
from tickpipe_shared.wire.progress import RequestPlanned, decode_progress

T0 = datetime(2019, 2, 4, tzinfo=UTC)
H = timedelta(hours=1)


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


async def add(
    conn: asyncpg.Connection,
    start: datetime,
    state: str,
    fetched_after_end: bool = True,
    instrument: str = "EURUSD",
    kind: str = "ticks",
    span: timedelta = H,
) -> None:
    """One ingest-log row; ``fetched_after_end`` False: downloaded while the unit was open."""
    end = start + span
    fetched = end + timedelta(minutes=5) if fetched_after_end else end - timedelta(minutes=5)
    payload = None if state == "failed" else "ab" * 32
    await conn.execute(
        """INSERT INTO ingest_log (instrument, kind, unit_start, unit_end, source, state, rows,
               part_count, parts_written, payload_sha256, decoder_version, fetched_at,
               decoded_at)
           VALUES ($1, $2, $3, $4, 'dukascopy-json', $5, 0, 1, 1, $6, 'test', $7, $7)""",
        instrument, kind, start, end, state, payload, None if state == "failed" else fetched,
    )  # fmt: skip


async def test_done_units_are_stored_or_empty_and_fetched_after_closing(
    conn: asyncpg.Connection, dsn: str
) -> None:
    await add(conn, T0, "stored")
    await add(conn, T0 + H, "empty")
    await add(conn, T0 + 2 * H, "stored", fetched_after_end=False)  # open when fetched
    await add(conn, T0 + 3 * H, "partial")
    await add(conn, T0 + 4 * H, "failed")
    await add(conn, T0 + 5 * H, "suspect-empty")
    await add(conn, T0 + 6 * H, "stored")  # outside the asked range
    await add(conn, T0, "stored", instrument="GBPUSD")
    await add(conn, T0, "stored", kind="candles:1m:bid", span=timedelta(days=1))
    ledger = IngestLedger(Settings(database_url=SecretStr(dsn)))
    try:
        done = await ledger.done_units("EURUSD", "ticks", ms(T0), ms(T0 + 6 * H))
        assert done == {ms(T0), ms(T0 + H)}
        assert await ledger.done_units("EURUSD", "candles:1m:bid", ms(T0), ms(T0 + 24 * H)) == {
            ms(T0)
        }
        assert await ledger.done_units("USDJPY", "ticks", ms(T0), ms(T0 + 6 * H)) == set()
    finally:
        await ledger.close()


async def test_missing_table_means_nothing_done(dsn: str) -> None:
    ledger = IngestLedger(Settings(database_url=SecretStr(dsn)))  # not migrated
    try:
        assert await ledger.done_units("EURUSD", "ticks", ms(T0), ms(T0 + H)) == set()
    finally:
        await ledger.close()


async def test_unreachable_database_is_retryable() -> None:
    ledger = IngestLedger(
        Settings(database_url=SecretStr("postgresql://u:hunter2@127.0.0.1:1/x")), timeout_s=2.0
    )
    with pytest.raises(RetryableError, match="ingest log unreachable") as info:
        await ledger.done_units("EURUSD", "ticks", ms(T0), ms(T0 + H))
    assert "hunter2" not in str(info.value)


@dataclass
class Rec:
    value: bytes | None
    key: bytes | None = b"k"
    topic: str = "tickpipe.fetch-requests"
    partition: int = 0
    offset: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


async def test_planner_resumes_from_the_ledger(conn: asyncpg.Connection, dsn: str) -> None:
    await add(conn, T0, "stored")
    await add(conn, T0 + H, "stored", fetched_after_end=False)
    await add(conn, T0 + 2 * H, "empty")
    registry = InstrumentRegistry.from_instruments_response(
        {"instruments": [{"code": "EUR-USD", "pipValue": 0.0001, "priceScale": 5}]}
    )

    async def load() -> InstrumentRegistry:
        return registry

    async def no_detail(code: str) -> None:
        return None

    def failure(record: object, error: BaseException, rid: str | None) -> OutRecord:
        raise AssertionError(f"unexpected failure: {error}")

    settings = Settings(database_url=SecretStr(dsn))
    ledger = IngestLedger(settings)
    planner = Planner(settings, load, {"dukascopy-json"}, failure, details=no_detail,
                      ledger=ledger)  # fmt: skip
    request = {"request_id": "resume-1", "source": "dukascopy-json", "instrument": "EURUSD",
               "from": "2019-02-04T00:00:00Z", "to": "2019-02-04T04:00:00Z",
               "skip_existing": True}  # fmt: skip
    try:
        out = await planner.process([Rec(json.dumps(request).encode())])
    finally:
        await ledger.close()
    planned = decode_progress(out[0].value)
    assert isinstance(planned, RequestPlanned) and (planned.units, planned.skipped) == (2, 2)
    starts = [FetchUnit.from_json(o.value).unit.start_ms for o in out[1:]]
    assert starts == [ms(T0 + H), ms(T0 + 3 * H)]  # the open-when-fetched hour and the new one
