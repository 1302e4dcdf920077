"""Fixtures of the integration tests: the local Kafka + PostgreSQL brought up without Docker.

``infra`` starts them with ``tickpipe-stack up --infra-only`` semantics (idempotent: an already
running stack is reused) and leaves them running afterwards, so that the next test run and the
developer's own shell share one stack. Stop it with ``uv run tickpipe-stack down``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from support.database import scratch_database
from support.storage import storage_mode
from tickpipe_dev.stack import api
from tickpipe_dev.stack.processes import Reporter
from tickpipe_shared.config import Settings
from tickpipe_shared.db.migrate import migrate


@pytest.fixture(scope="session")
def infra() -> Settings:
    """Kafka (KRaft, 127.0.0.1:9092) + PostgreSQL (127.0.0.1:55432) + tickpipe topics.

    Returns the :class:`Settings` the stack serves. A failed bring-up fails every test that uses
    the fixture (it never skips: a broken stack must not look like a green run).
    """
    try:
        return api.up(infra_only=True, reporter=Reporter())
    except api.StackError as exc:
        pytest.fail(f"local stack bring-up failed (tickpipe-stack up --infra-only):\n{exc}",
                    pytrace=False)  # fmt: skip


@pytest.fixture
async def dsn(infra: Settings) -> AsyncIterator[str]:
    """DSN of a new, empty database on the stack's PostgreSQL (dropped after the test)."""
    async with scratch_database(infra) as url:
        yield url


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the ``dsn`` database with every migration applied, on this run's
    storage (:mod:`support.storage`)."""
    c = await asyncpg.connect(dsn)
    try:
        await migrate(c, storage_mode())
        yield c
    finally:
        await c.close()
