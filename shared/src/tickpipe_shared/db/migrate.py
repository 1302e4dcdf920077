"""Versioned migrations: ``migrations/NNNN_name.sql``, applied once each, in order.

When the database uses TimescaleDB, ``NNNN_name.timescaledb.sql`` runs right after its base
file in the same transaction; on plain PostgreSQL it is skipped. The choice is logged and
recorded in ``schema_migrations.variant``; which storage a database uses is decided once, when
its schema is first created (:data:`StorageMode`), and kept afterwards. An advisory lock keeps
concurrent writers from migrating at the same time.

What follows a ``-- tickpipe:after-commit`` line in a TimescaleDB file runs after the commit, one
statement at a time (statements end with ``;`` at the end of a line), for what cannot run in a
transaction block, e.g. ``CALL refresh_continuous_aggregate(…)``. A failure there is logged and
does not undo the migration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import asyncpg
import structlog

log = structlog.get_logger()

_LOCK_ID = 0x7469636B  # "tick"

#: How :func:`migrate` chooses the storage of a database whose schema it creates: ``auto``
#: TimescaleDB when the server has the extension (created here), else plain PostgreSQL; ``on``
#: TimescaleDB or an error; ``off`` plain PostgreSQL tables even where TimescaleDB is installed.
#: A database that already has a schema keeps its storage, whatever the mode.
StorageMode = Literal["auto", "on", "off"]


class StorageModeError(RuntimeError):
    """The storage asked for cannot be had (``on`` without the extension, or a schema created
    with the other storage)."""
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
AFTER_COMMIT_MARKER = "-- tickpipe:after-commit"


def split_after_commit(sql: str) -> tuple[str, list[str]]:
    """``sql`` cut at :data:`AFTER_COMMIT_MARKER`: the transactional part and the statements to
    run one by one after the commit (comment-only pieces dropped)."""
    head, _, tail = sql.partition(AFTER_COMMIT_MARKER)
    statements = []
    for piece in re.split(r";[ \t]*(?:\n|$)", tail):
        code = "\n".join(ln for ln in piece.splitlines() if not ln.lstrip().startswith("--"))
        if code.strip():
            statements.append(code.strip())
    return head, statements


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: base SQL and the optional TimescaleDB SQL."""

    version: int
    name: str
    sql: str
    timescaledb_sql: str | None


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What :func:`migrate` found and did."""

    timescaledb: bool
    applied: list[int]
    current: int


def load_migrations() -> list[Migration]:
    """All migrations shipped with the package, by version."""
    folder = resources.files("tickpipe_shared.db") / "migrations"
    out = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        m = _NAME.match(entry.name)
        if not m:
            continue
        ts = folder / entry.name.replace(".sql", ".timescaledb.sql")
        out.append(
            Migration(
                int(m.group(1)),
                m.group(2),
                entry.read_text(),
                ts.read_text() if ts.is_file() else None,
            )
        )
    return out


async def timescaledb_available(conn: asyncpg.Connection) -> bool:
    """True when TimescaleDB is installed in the database (created here if only available)."""
    installed = await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    if installed:
        return True
    available = await conn.fetchval(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    )
    if not available:
        return False
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except asyncpg.PostgresError as e:
        log.warning("timescaledb available but cannot be created", error=str(e))
        return False
    return True


async def storage_description(conn: asyncpg.Connection) -> str:
    """Where this database's data lives, for people: ``TimescaleDB 2.28.3 on PostgreSQL 15.20``
    or ``plain PostgreSQL 15.20`` (the extension is absent or the schema was created plain)."""
    version = str(await conn.fetchval("SHOW server_version")).split()[0]
    ext = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    plain = await conn.fetchval(
        "SELECT to_regclass('schema_migrations') IS NOT NULL AND NOT EXISTS ("
        "SELECT 1 FROM schema_migrations WHERE variant = 'timescaledb')"
    )
    if ext and not plain:
        return f"TimescaleDB {ext} on PostgreSQL {version}"
    return f"plain PostgreSQL {version}"


async def _uses_timescaledb(conn: asyncpg.Connection, mode: StorageMode) -> bool:
    variants = {
        r["variant"]: r["n"]
        for r in await conn.fetch(
            "SELECT variant, count(*) AS n FROM schema_migrations GROUP BY variant"
        )
    }
    if variants:  # the schema exists: its storage was chosen when it was created
        timescale = "timescaledb" in variants
        if (mode == "on" and not timescale) or (mode == "off" and timescale):
            want = "TimescaleDB" if mode == "on" else "plain PostgreSQL"
            raise StorageModeError(
                f"storage {want} asked for (TICKPIPE_DATABASE_TIMESCALEDB={mode}), but this "
                f"database's schema was created on "
                f"{'TimescaleDB' if timescale else 'plain PostgreSQL'}"
            )
        return timescale
    if mode == "off":
        return False
    if await timescaledb_available(conn):
        return True
    if mode == "on":
        raise StorageModeError(
            "TimescaleDB asked for (TICKPIPE_DATABASE_TIMESCALEDB=on) but the server has no "
            "timescaledb extension (install it, add it to shared_preload_libraries)"
        )
    return False


async def migrate(conn: asyncpg.Connection, mode: StorageMode = "auto") -> MigrationReport:
    """Apply every migration not applied yet, on the storage ``mode`` gives a new schema.

    Raises :class:`asyncpg.PostgresError` when one fails (its transaction is rolled back;
    earlier ones stay) and :class:`StorageModeError` when ``mode`` cannot be honoured."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   variant    text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        timescale = await _uses_timescaledb(conn, mode)
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for m in load_migrations():
            if m.version in done:
                continue
            variant = "timescaledb" if timescale and m.timescaledb_sql else "postgresql"
            variant_sql, after_commit = split_after_commit(m.timescaledb_sql or "")
            async with conn.transaction():
                await conn.execute(m.sql)
                if variant == "timescaledb":
                    await conn.execute(variant_sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, variant) VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    variant,
                )
            applied.append(m.version)
            log.info("migration applied", version=m.version, name=m.name, variant=variant)
            for statement in after_commit if variant == "timescaledb" else []:
                try:
                    await conn.execute(statement)
                except (asyncpg.PostgresError, TimeoutError) as e:
                    log.error(
                        "after-commit statement failed",
                        version=m.version,
                        statement=statement,
                        error=str(e),
                    )
        current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
        log.info(
            "schema ready",
            version=current,
            storage="timescaledb hypertables" if timescale else "plain PostgreSQL tables",
        )
        return MigrationReport(timescale, applied, int(current))
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
