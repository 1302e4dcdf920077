"""A fresh PostgreSQL database per test module, on the local stack's server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from tickpipe_shared.config import Settings


def with_database(settings: Settings, name: str) -> str:
    """The stack's DSN pointed at database ``name``."""
    dsn = settings.database_url.get_secret_value()
    return dsn.rsplit("/", 1)[0] + "/" + name


@asynccontextmanager
async def scratch_database(settings: Settings, prefix: str = "tp_test") -> AsyncIterator[str]:
    """Create an empty database, yield its DSN, drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    await _create_database(settings, name)
    try:
        yield with_database(settings, name)
    finally:
        admin = await asyncpg.connect(settings.database_url.get_secret_value())
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def _create_database(settings: Settings, name: str) -> None:
    # CREATE DATABASE copies template1 and fails while another session is connected to it
    # (another test's CREATE DATABASE a moment earlier): retry briefly.
    for attempt in range(10):
        admin = await asyncpg.connect(settings.database_url.get_secret_value())
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
            return
        except asyncpg.ObjectInUseError:
            if attempt == 9:
                raise
        finally:
            await admin.close()
        await asyncio.sleep(0.5)


def run_admin_sql(settings: Settings, sql: str) -> None:
    """Run one statement on the stack's database (from synchronous fixtures)."""

    async def run() -> None:
        conn = await asyncpg.connect(settings.database_url.get_secret_value())
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def refuse_inserts_sql(instrument: str, sqlstate: str = "54000") -> str:
    """SQL that makes the database refuse every tick of ``instrument`` with ``sqlstate``
    (default 54000, program limit exceeded): a database error that waiting does not fix, on
    TimescaleDB and plain PostgreSQL alike (a row trigger on ``ticks``)."""
    return f"""
CREATE FUNCTION refuse_{instrument.lower()}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.instrument = '{instrument}' THEN
    RAISE EXCEPTION 'row limit reached for %', NEW.instrument USING ERRCODE = '{sqlstate}';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_{instrument.lower()} BEFORE INSERT ON ticks
FOR EACH ROW EXECUTE FUNCTION refuse_{instrument.lower()}();
"""
