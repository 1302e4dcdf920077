"""Versioned migrations: ``migrations/NNNN_name.sql``, applied once each, in order.

When the TimescaleDB extension is available, ``NNNN_name.timescaledb.sql`` runs right after
its base file in the same transaction; on plain PostgreSQL it is skipped. The choice is logged
and recorded in ``schema_migrations.variant``. An advisory lock keeps concurrent writers from
migrating at the same time.

What follows a ``-- tickpipe:after-commit`` line in a TimescaleDB file runs after the commit, one
statement at a time (statements end with ``;`` at the end of a line), for what cannot run in a
transaction block, e.g. ``CALL refresh_continuous_aggregate(…)``. A failure there is logged and
does not undo the migration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg
import structlog

log = structlog.get_logger()

_LOCK_ID = 0x7469636B  # "tick"
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


async def migrate(conn: asyncpg.Connection) -> MigrationReport:
    """Apply every migration not applied yet. Raises :class:`asyncpg.PostgresError` when one
    fails (its transaction is rolled back; earlier ones stay)."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   variant    text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        timescale = await timescaledb_available(conn)
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
