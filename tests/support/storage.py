"""Which storage the integration tests run on: TimescaleDB (the default, what the local stack
serves) or plain PostgreSQL (``TICKPIPE_DATABASE_TIMESCALEDB=off``, the second job of
``bin/test``: the same storage tests on databases without the extension)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import asyncpg
import pytest
from tickpipe_shared.db.migrate import MigrationReport, StorageMode
from tickpipe_shared.wire.batch import Batch
from tickpipe_writer.aggregates import OhlcvRefresher
from tickpipe_writer.plan import Plan
from tickpipe_writer.store import write

#: The setting the services read too, so that e2e runs take the same storage.
ENV = "TICKPIPE_DATABASE_TIMESCALEDB"


def storage_mode() -> StorageMode:
    """``on`` unless the run asks for plain PostgreSQL: on the local stack TimescaleDB must be
    there (a missing extension fails the tests instead of silently testing plain tables)."""
    value = os.environ.get(ENV, "on")
    if value not in ("auto", "on", "off"):
        raise ValueError(f"{ENV}={value!r}: expected auto, on or off")
    return "off" if value == "off" else "on"


def on_timescaledb() -> bool:
    """True when this run's storage is TimescaleDB."""
    return storage_mode() == "on"


def skip_unless_timescaledb() -> None:
    """Skip a TimescaleDB-only test on the plain-PostgreSQL run."""
    if not on_timescaledb():
        pytest.skip(f"TimescaleDB-only test; this run is on plain PostgreSQL ({ENV}=off)")


async def require_timescaledb(report: MigrationReport) -> MigrationReport:
    """Skip a TimescaleDB-only test on the plain-PostgreSQL run; fail it when the schema came
    up plain although TimescaleDB was asked for."""
    skip_unless_timescaledb()
    assert report.timescaledb, "TimescaleDB asked for, schema came up on plain PostgreSQL"
    return report


async def write_as_the_writer(conn: asyncpg.Connection, batches: Sequence[Batch]) -> Plan:
    """``store.write`` then, on TimescaleDB, the writer's exact-window refresh of the
    continuous aggregates — what the writer service does per transaction. (A bare
    ``store.write`` below the watermark a refresh policy left stays invisible in ``ohlcv_*``
    until the policy's next run.)"""
    work = await write(conn, batches)
    refresher = await OhlcvRefresher.detect(conn)
    if refresher is not None:
        await refresher.refresh(conn, work)
    return work
