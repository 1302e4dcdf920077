"""What a database error means for the records of a transaction: wait, fail them, or retry a
bounded number of times.

Three classes, by exception type and SQLSTATE (PostgreSQL's error codes, appendix A of its
manual):

* ``availability``: the database is not there right now, or not usable by anyone (connection
  lost, shutdown, failover to a read-only standby, out of disk or memory, too many
  connections, a lock or serialization conflict, missing privileges or a missing table).
  Waiting (or an operator) fixes it, and every record would fail alike: retried indefinitely,
  nothing is drained into failures.
* ``data``: the database refused the rows themselves (class 22 data exception, class 23
  integrity constraint violation) or the batch could not even be encoded. The record is at
  fault: it goes to failures at once.
* ``persistent``: any other database error (a configured limit such as TimescaleDB's
  ``tuple decompression limit exceeded``, a program limit, a statement timeout, an internal
  error). It will not go away by waiting, but it is not known to be the data's either: the
  writer retries it a bounded number of times (:class:`AttemptCounter`), then sends the records
  that still fail to failures with the reason.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Literal

import asyncpg

ErrorClass = Literal["availability", "data", "persistent"]

#: Exception types that mean "the database is not reachable right now".
AVAILABILITY_ERRORS: tuple[type[BaseException], ...] = (
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

#: SQLSTATE prefixes of availability errors (see the module docstring).
_AVAILABILITY_SQLSTATES: tuple[str, ...] = (
    "08",  # connection exception
    "28",  # invalid authorization (password rotated, role dropped)
    "3D000",  # the database does not exist
    "25006",  # read-only transaction: a standby after a failover
    "40",  # transaction rollback: serialization failure, deadlock
    "42501",  # insufficient privilege
    "42P01",  # undefined table: the schema is missing
    "53000",  # insufficient resources
    "53100",  # disk full
    "53200",  # out of memory
    "53300",  # too many connections
    "55P03",  # lock not available
    "57P",  # admin/crash shutdown, cannot connect now, database dropped
    "58",  # system error (I/O)
)

_DATA_SQLSTATES: tuple[str, ...] = ("22", "23")


def classify(error: BaseException) -> ErrorClass:
    """The class of ``error`` raised by a write transaction. Pure.

    Any exception that is not a database error (e.g. :class:`ValueError` from encoding a
    batch) is ``data``: it is the batch's.
    """
    if isinstance(error, AVAILABILITY_ERRORS):
        return "availability"
    if not isinstance(error, asyncpg.PostgresError):
        return "data"
    sqlstate = str(getattr(error, "sqlstate", "") or "")
    if sqlstate.startswith(_AVAILABILITY_SQLSTATES):
        return "availability"
    if sqlstate.startswith(_DATA_SQLSTATES):
        return "data"
    return "persistent"


class PersistentDatabaseError(Exception):
    """A ``persistent`` database error that outlived its attempts: the records it concerns go
    to failures (the runtime isolates them one by one)."""


class AttemptCounter:
    """Attempts per consumed record (``(topic, partition, offset)``) that failed with a
    ``persistent`` error, bounded in size.

    The same records come back after the runtime rewinds, possibly in a batch with others, so
    attempts are counted per record rather than per batch. A record's count is dropped when it
    is written; at most ``max_entries`` are kept (oldest first out), so memory stays bounded
    whatever the traffic.
    """

    def __init__(self, attempts: int, max_entries: int = 100_000) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        self.attempts = attempts
        self.max_entries = max_entries
        self._counts: OrderedDict[tuple[str, int, int], int] = OrderedDict()

    def failed(self, records: Sequence[tuple[str, int, int]]) -> int:
        """Count one more failed attempt of ``records``; returns the highest count among them."""
        highest = 0
        for r in records:
            n = self._counts.pop(r, 0) + 1
            self._counts[r] = n
            highest = max(highest, n)
        while len(self._counts) > self.max_entries:
            self._counts.popitem(last=False)
        return highest

    def exhausted(self, count: int) -> bool:
        """True when ``count`` attempts are all a record gets."""
        return count >= self.attempts

    def succeeded(self, records: Iterable[tuple[str, int, int]]) -> None:
        """Forget ``records``: they were written."""
        for r in records:
            self._counts.pop(r, None)

    def __len__(self) -> int:
        return len(self._counts)
