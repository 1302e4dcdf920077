"""``FailureLedger.process`` with a fake connection: one statement per batch, skips, retries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.records import RetryableError
from tickpipe_shared.wire.failures import Failure
from tickpipe_writer.failures import STAGE, UPSERT_FAILED, FailureLedger

KEY0 = "dukascopy-bi5|EURUSD|ticks|2019-02-04T00:00:00Z"
KEY1 = "dukascopy-bi5|EURUSD|ticks|2019-02-04T01:00:00Z"


@dataclass
class Record:
    value: bytes | None
    key: bytes | None = None
    topic: str = "tickpipe.failures"
    partition: int = 0
    offset: int = 0
    headers: Any = ()


def rec(unit_key: str | None, stage: str = "fetcher", offset: int = 0, **kw: Any) -> Record:
    f = Failure(
        stage=stage,
        reason=kw.get("reason", "gave up"),
        error_class="E",
        key=unit_key,
        unit_key=unit_key,
        attempt=kw.get("attempt", 3),
        request_id="r1",
    )
    return Record(f.to_json(), unit_key.encode() if unit_key else None, offset=offset)


@dataclass
class FakeConn:
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    fail: list[BaseException] = field(default_factory=list)

    async def execute(self, sql: str, *args: Any) -> str:
        self.calls.append((sql, args))
        if self.fail:
            raise self.fail.pop(0)
        return f"INSERT 0 {len(args[0])}"


@dataclass
class FakePool:
    conn: FakeConn

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakeConn]:
        yield self.conn


def ledger(conn: FakeConn) -> FailureLedger:
    pool = FakePool(conn)

    async def factory() -> Any:
        return pool

    return FailureLedger(Settings(), pool_factory=factory)


async def test_one_statement_per_batch_last_failure_per_unit() -> None:
    conn = FakeConn()
    out = await ledger(conn).process(
        [
            rec(KEY0, reason="first"),
            rec("EURUSD", stage="fetcher-planner"),  # a rejected request: skipped
            Record(b"not json"),  # skipped, logged
            rec(KEY1, stage="decoder", attempt=1),
            rec(KEY0, reason="second", attempt=5),
            rec(KEY1, stage=STAGE),  # the runtime's failure about our own record: skipped
        ]
    )
    assert out == []  # never produces anything, failures included
    ((sql, args),) = conn.calls
    assert sql == UPSERT_FAILED
    instruments, kinds, starts, ends, sources, request_ids, stages, reasons, attempts = args
    assert instruments == ["EURUSD", "EURUSD"] and kinds == ["ticks", "ticks"]
    assert starts == [datetime(2019, 2, 4, 0, tzinfo=UTC), datetime(2019, 2, 4, 1, tzinfo=UTC)]
    assert ends == [datetime(2019, 2, 4, 1, tzinfo=UTC), datetime(2019, 2, 4, 2, tzinfo=UTC)]
    assert sources == ["dukascopy-bi5"] * 2 and request_ids == ["r1", "r1"]
    assert stages == ["fetcher", "decoder"] and reasons == ["second", "gave up"]
    assert attempts == [5, 1]


async def test_nothing_to_record_touches_no_database() -> None:
    async def factory() -> Any:
        raise AssertionError("no connection needed")

    processor = FailureLedger(Settings(), pool_factory=factory)
    assert await processor.process([rec("EURUSD", stage="fetcher-planner")]) == []
    assert await processor.process([]) == []


@pytest.mark.parametrize(
    "error",
    [ConnectionRefusedError("refused"), asyncpg.CannotConnectNowError("starting up")],
)
async def test_database_down_is_retryable(error: BaseException) -> None:
    conn = FakeConn(fail=[error])
    with pytest.raises(RetryableError, match="database unavailable"):
        await ledger(conn).process([rec(KEY0)])


async def test_pool_creation_failure_is_retryable() -> None:
    async def factory() -> Any:
        raise OSError("connection refused")

    with pytest.raises(RetryableError):
        await FailureLedger(Settings(), pool_factory=factory).process([rec(KEY0)])


async def test_refused_batch_goes_row_by_row() -> None:
    bad = asyncpg.StringDataRightTruncationError("value too long")
    conn = FakeConn(fail=[bad, bad])  # the batch, then the first row alone
    assert await ledger(conn).process([rec(KEY0), rec(KEY1)]) == []
    assert [len(args[0]) for _, args in conn.calls] == [2, 1, 1]
    assert conn.calls[-1][1][2] == [datetime(2019, 2, 4, 1, tzinfo=UTC)]
