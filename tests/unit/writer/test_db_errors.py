"""Which database errors wait, which fail the record, which get bounded attempts."""

from __future__ import annotations

import asyncpg
import pytest
from tickpipe_writer.db_errors import AttemptCounter, classify


def pg_error(cls: type[asyncpg.PostgresError]) -> asyncpg.PostgresError:
    return cls("boom")


@pytest.mark.parametrize(
    "error",
    [
        ConnectionResetError(),
        TimeoutError(),
        OSError("no route"),
        asyncpg.InterfaceError("connection is closed"),
        pg_error(asyncpg.CannotConnectNowError),
        pg_error(asyncpg.AdminShutdownError),
        pg_error(asyncpg.TooManyConnectionsError),
        pg_error(asyncpg.ReadOnlySQLTransactionError),  # a standby after a failover
        pg_error(asyncpg.DiskFullError),
        pg_error(asyncpg.OutOfMemoryError),
        pg_error(asyncpg.InsufficientPrivilegeError),
        pg_error(asyncpg.UndefinedTableError),
        pg_error(asyncpg.InvalidPasswordError),
        pg_error(asyncpg.SerializationError),
        pg_error(asyncpg.DeadlockDetectedError),
        pg_error(asyncpg.LockNotAvailableError),
    ],
)
def test_availability_errors_wait(error: BaseException) -> None:
    assert classify(error) == "availability"


@pytest.mark.parametrize(
    "error",
    [
        pg_error(asyncpg.NumericValueOutOfRangeError),
        pg_error(asyncpg.UniqueViolationError),
        pg_error(asyncpg.CheckViolationError),
        pg_error(asyncpg.NotNullViolationError),
        ValueError("batch cannot be encoded"),
    ],
)
def test_data_errors_fail_the_record(error: BaseException) -> None:
    assert classify(error) == "data"


@pytest.mark.parametrize(
    "error",
    [
        # TimescaleDB's "tuple decompression limit exceeded by operation" (SQLSTATE 53400).
        pg_error(asyncpg.ConfigurationLimitExceededError),
        pg_error(asyncpg.ProgramLimitExceededError),
        pg_error(asyncpg.QueryCanceledError),  # statement_timeout
        pg_error(asyncpg.InternalServerError),
        pg_error(asyncpg.FeatureNotSupportedError),
    ],
)
def test_other_database_errors_are_bounded(error: BaseException) -> None:
    assert classify(error) == "persistent"


def test_attempts_are_counted_per_record_and_forgotten_when_written() -> None:
    counter = AttemptCounter(3)
    a, b, c = ("t", 0, 1), ("t", 0, 2), ("t", 1, 7)
    assert counter.failed([a, b]) == 1
    assert counter.failed([a, b, c]) == 2  # c joined the batch after the rewind
    assert not counter.exhausted(2)
    assert counter.failed([a, b, c]) == 3 and counter.exhausted(3)
    counter.succeeded([a])
    assert counter.failed([a]) == 1
    assert counter.failed([c]) == 3


def test_attempt_counter_is_bounded() -> None:
    counter = AttemptCounter(2, max_entries=100)
    for offset in range(1000):
        counter.failed([("t", 0, offset)])
    assert len(counter) == 100
    assert counter.failed([("t", 0, 999)]) == 2  # the newest are kept
    assert counter.failed([("t", 0, 0)]) == 1  # the oldest were dropped
    with pytest.raises(ValueError, match="attempts must be >= 1"):
        AttemptCounter(0)
