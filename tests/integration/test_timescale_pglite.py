"""The TimescaleDB schema and OHLCV queries against a real TimescaleDB: PGlite + TimescaleDB 2.23.

No Debian package of TimescaleDB exists, so CI runs ``dev/pglite/run-sql.mjs`` (PostgreSQL with
TimescaleDB compiled to WASM, in Node, in memory): it applies the migrations exactly as
``tickpipe_shared.db.migrate`` does on TimescaleDB and then runs the steps this test sends —
SQL texts taken from the Python code itself (the writer's binary COPY rows, the writer's refresh
calls, ``db.ohlcv.candles_sql``). The same ticks go through the writer into the local plain
PostgreSQL, and every candle from the continuous aggregates must equal the plain views' (and a
Python reference). ``bin/bootstrap`` installs Node and ``dev/pglite/node_modules``.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from support.database import scratch_database
from support.ohlcv import (
    T0,
    assert_candles_equal,
    hour_batch,
    initial_batches,
    reference_candles,
    stored_ticks,
)
from tickpipe_shared.config import Settings
from tickpipe_shared.db.migrate import load_migrations, migrate, split_after_commit
from tickpipe_shared.db.ohlcv import TIMEFRAMES, candles, candles_sql
from tickpipe_shared.units import HOUR_MS
from tickpipe_shared.wire.batch import TickBatch
from tickpipe_writer.aggregates import refresh_plan, refresh_sql, written_windows
from tickpipe_writer.copy_binary import SIGNATURE, TICK_COPY_COLUMNS, TRAILER, encode_tick_rows
from tickpipe_writer.plan import Plan
from tickpipe_writer.store import write

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "dev" / "pglite" / "run-sql.mjs"
INSTRUMENTS = ("EURUSD", "USDJPY")
FROM = datetime(2021, 2, 26, tzinfo=UTC)
TO = datetime(2021, 3, 3, tzinfo=UTC)
DAY = 24 * HOUR_MS


def _iso(d: datetime) -> str:
    return d.isoformat()


class Steps:
    """The step list sent to the runner, built from the Python code's own SQL texts."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def add(self, name: str, sql: str, **extra: Any) -> None:
        self.steps.append({"name": name, "sql": sql, **extra})

    def copy(self, name: str, batches: Sequence[TickBatch]) -> None:
        """The writer's binary COPY of ``batches`` (same bytes as ``store.write`` sends)."""
        blob = SIGNATURE + b"".join(encode_tick_rows(b) for b in batches) + TRAILER
        cols = ", ".join(TICK_COPY_COLUMNS)
        self.add(
            name,
            f"COPY ticks ({cols}) FROM '/dev/blob' WITH (FORMAT binary)",
            blob_base64=base64.b64encode(blob).decode(),
        )

    def replace(self, name: str, batch: TickBatch) -> Plan:
        """A unit written again: the writer's delete of the unit window, then the COPY."""
        m = batch.meta
        self.add(
            f"{name}_delete",
            "DELETE FROM ticks WHERE instrument = $1 AND ts >= $2::timestamptz "
            "AND ts < $3::timestamptz",
            params=[
                m.instrument,
                _iso(datetime.fromtimestamp(m.unit_start_ms / 1000, UTC)),
                _iso(datetime.fromtimestamp(m.unit_end_ms / 1000, UTC)),
            ],
        )
        self.copy(f"{name}_copy", [batch])
        return Plan(deletes=[(m.instrument, m.unit_start_ms, m.unit_end_ms)], inserts=[batch])

    def refresh(self, name: str, work: Plan) -> None:
        """What :class:`OhlcvRefresher` runs after the commit of ``work``, call by call."""
        for i, (view, window) in enumerate(refresh_plan(written_windows(work))):
            self.add(f"{name}_refresh_{i}", refresh_sql(view, window), exec=True)

    def candles(self, phase: str) -> None:
        for tf in TIMEFRAMES:
            for instrument in INSTRUMENTS:
                self.add(
                    f"{phase}:{tf}:{instrument}",
                    candles_sql(tf),
                    params=[instrument, _iso(FROM), _iso(TO)],
                )


def run_pglite(steps: Steps, tmp_path: Path) -> dict[str, Any]:
    node = shutil.which("node")
    assert node, "node is missing: bin/bootstrap installs it (apt nodejs)"
    assert (RUNNER.parent / "node_modules" / "@unni-craftsman" / "pglite").is_dir(), (
        "dev/pglite/node_modules is missing: run bin/bootstrap (npm ci in dev/pglite)"
    )
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"steps": steps.steps}))
    proc = subprocess.run(
        [node, str(RUNNER), str(plan)], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.stdout.strip(), f"no output from the runner:\n{proc.stderr[-3000:]}"
    out: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    assert proc.returncode == 0 and "failed" not in out, (
        f"step {out.get('failed')!r} failed: {out.get('error')}\n{proc.stderr[-3000:]}"
    )
    return out


def parsed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runner rows with ``bucket`` back to an aware datetime."""
    return [
        r | {"bucket": datetime.fromisoformat(r["bucket"].replace("Z", "+00:00"))} for r in rows
    ]


@pytest.fixture
async def plain(infra: Settings) -> AsyncIterator[asyncpg.Connection]:
    async with scratch_database(infra, prefix="tp_pglite") as dsn:
        c = await asyncpg.connect(dsn)
        try:
            assert not (await migrate(c)).timescaledb
            yield c
        finally:
            await c.close()


async def plain_candles(conn: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for tf in TIMEFRAMES:
        for instrument in INSTRUMENTS:
            got = await candles(conn, instrument, tf, FROM, TO)
            out[f"{tf}:{instrument}"] = [c.to_dict() | {"bucket": c.bucket} for c in got]
    return out


async def test_timescaledb_schema_aggregates_and_compression_match_plain_postgresql(
    plain: asyncpg.Connection, tmp_path: Path
) -> None:
    s = Steps()
    s.add(
        "aggregates",
        "SELECT view_name, materialized_only, finalized FROM "
        "timescaledb_information.continuous_aggregates ORDER BY view_name",
    )
    s.add(
        "chunk_interval",
        "SELECT coalesce(c.view_name, d.hypertable_name) AS name, "
        "d.time_interval::text AS interval FROM timescaledb_information.dimensions d LEFT JOIN "
        "timescaledb_information.continuous_aggregates c "
        "ON c.materialization_hypertable_name = d.hypertable_name",
    )
    s.add(
        "compression_settings",
        "SELECT attname, segmentby_column_index, orderby_column_index "
        "FROM timescaledb_information.compression_settings WHERE hypertable_name = 'ticks' "
        "ORDER BY attname",
    )
    s.add(
        "jobs",
        "SELECT job_id, proc_name, hypertable_name, config::text AS config FROM "
        "timescaledb_information.jobs WHERE proc_name IN "
        "('policy_refresh_continuous_aggregate', 'policy_compression') ORDER BY job_id",
    )
    s.add("migrations", "SELECT version, variant FROM schema_migrations ORDER BY version")
    # A refresh is refused inside a transaction block: why the writer runs it after the commit.
    s.add(
        "refresh_in_transaction",
        "BEGIN; " + refresh_sql("ohlcv_1m", (T0, T0 + HOUR_MS)) + "; COMMIT",
        exec=True,
        expect_error="cannot run inside a transaction block",
    )
    s.add("rollback", "ROLLBACK", exec=True)

    # Phase 1: the initial hours, refreshed for exactly what was written.
    batches = initial_batches()
    s.copy("initial_copy", batches)
    s.refresh("initial", Plan(inserts=batches))
    s.candles("initial")

    # Phase 2: a backfill a day earlier, below the watermark: invisible until its window is
    # refreshed (real-time aggregation only covers buckets past the watermark).
    backfill = hour_batch("EURUSD", T0 - DAY, 33, seed=7)
    s.copy("backfill_copy", [backfill])
    s.add("backfill_unrefreshed", candles_sql("1h"), params=["EURUSD", _iso(FROM), _iso(TO)])
    s.refresh("backfill", Plan(inserts=[backfill]))
    s.candles("backfill")

    # Phase 3: a unit written again (re-fetched, fewer ticks), then everything compressed.
    s.refresh("replace", s.replace("replace", hour_batch("EURUSD", T0 + HOUR_MS, 17, seed=99)))
    s.add(
        "compress",
        "SELECT count(compress_chunk(c, if_not_compressed => true)) AS n "
        "FROM show_chunks('ticks') c",
    )
    s.add(
        "chunks",
        "SELECT chunk_name, is_compressed FROM timescaledb_information.chunks "
        "WHERE hypertable_name = 'ticks' ORDER BY range_start",
    )
    s.candles("compressed")

    # Phase 4: the writer's unit replace into a compressed chunk, refreshed.
    s.refresh("replace2", s.replace("replace2", hour_batch("USDJPY", T0, 25, seed=5, scale=3)))
    s.candles("replace_compressed")

    # Phase 5: a backfill nobody refreshes; the policies, run as their jobs, catch up.
    late = hour_batch("USDJPY", T0 - 3 * DAY + 5 * HOUR_MS, 21, seed=3, scale=3)
    s.copy("late_copy", [late])
    s.add("late_unrefreshed", candles_sql("1d"), params=["USDJPY", _iso(FROM), _iso(TO)])
    # PGlite has no background worker to schedule jobs, but CALL run_job runs exactly what the
    # scheduler would: every refresh policy (finest first: they were created in that order)
    # and the compression policy.
    s.add(
        "run_policies",
        """DO $$ DECLARE j int; BEGIN
             FOR j IN SELECT job_id FROM timescaledb_information.jobs
                      WHERE proc_name IN ('policy_refresh_continuous_aggregate',
                                          'policy_compression') ORDER BY job_id LOOP
               CALL run_job(j);
             END LOOP; END $$""",
        exec=True,
    )
    s.add(
        "chunks_after_policy",
        "SELECT chunk_name, is_compressed FROM timescaledb_information.chunks "
        "WHERE hypertable_name = 'ticks' ORDER BY range_start",
    )
    s.candles("policy")
    out = run_pglite(s, tmp_path)
    steps = out["steps"]

    # --- the schema --------------------------------------------------------------------
    assert out["timescaledb"].startswith("2.23")
    # Applied as tickpipe_shared.db.migrate does: every variant, the same after-commit statements.
    assert [(m["version"], m["variant"], m["after_commit"]) for m in out["migrations"]] == [
        (
            m.version,
            "timescaledb" if m.timescaledb_sql else "postgresql",
            len(split_after_commit(m.timescaledb_sql or "")[1]),
        )
        for m in load_migrations()
    ]
    assert {(r["view_name"], r["materialized_only"]) for r in steps["aggregates"]["rows"]} == {
        (f"ohlcv_{tf}", False) for tf in TIMEFRAMES
    }
    assert {r["name"]: r["interval"] for r in steps["chunk_interval"]["rows"]} == {
        "ticks": "1 day",
        "ohlcv_1m": "30 days",
        "ohlcv_5m": "180 days",
        "ohlcv_1h": "730 days",
        "ohlcv_1d": "3650 days",
    }
    settings = {r["attname"]: r for r in steps["compression_settings"]["rows"]}
    assert settings["instrument"]["segmentby_column_index"] == 1
    assert settings["ts"]["orderby_column_index"] == 1
    jobs = steps["jobs"]["rows"]
    assert [j["proc_name"] for j in jobs].count("policy_refresh_continuous_aggregate") == 4
    assert [j["hypertable_name"] for j in jobs if j["proc_name"] == "policy_compression"] == [
        "ticks"
    ]
    assert "cannot run inside a transaction block" in steps["refresh_in_transaction"]["error"]

    # --- the candles, phase by phase, against plain PostgreSQL through the writer -------------
    async def compare(phase: str, written: list[TickBatch]) -> None:
        expected = await plain_candles(plain)
        ticks = stored_ticks(written)
        for key, rows in expected.items():
            tf, instrument = key.split(":")
            assert rows, key
            assert_candles_equal(parsed(steps[f"{phase}:{key}"]["rows"]), rows)
            assert_candles_equal(rows, reference_candles(ticks, instrument, tf))

    written = list(batches)
    await write(plain, batches)
    await compare("initial", written)

    hidden = parsed(steps["backfill_unrefreshed"]["rows"])
    day_before = datetime.fromtimestamp((T0 - DAY) / 1000, UTC)
    assert day_before not in [r["bucket"] for r in hidden]  # not visible before the refresh
    await write(plain, [backfill])
    written.append(backfill)
    await compare("backfill", written)

    redo = hour_batch("EURUSD", T0 + HOUR_MS, 17, seed=99)
    await write(plain, [redo])
    written.append(redo)
    assert steps["compress"]["rows"][0]["n"] >= 3
    assert all(c["is_compressed"] for c in steps["chunks"]["rows"])
    await compare("compressed", written)

    redo2 = hour_batch("USDJPY", T0, 25, seed=5, scale=3)
    await write(plain, [redo2])
    written.append(redo2)
    await compare("replace_compressed", written)

    # Phase 5: the late backfill was invisible until the policies ran.
    late_day = datetime.fromtimestamp(late.meta.unit_start_ms / 1000, UTC).replace(hour=0)
    assert late_day not in [r["bucket"] for r in parsed(steps["late_unrefreshed"]["rows"])]
    await write(plain, [late])
    written.append(late)
    await compare("policy", written)
    assert late_day in [r["bucket"] for r in parsed(steps["policy:1d:USDJPY"]["rows"])]
    # The compression policy compressed the late backfill's new chunk as well.
    assert all(c["is_compressed"] for c in steps["chunks_after_policy"]["rows"])
    assert len(steps["chunks_after_policy"]["rows"]) > len(steps["chunks"]["rows"])


def test_refresh_windows_are_aligned_per_level() -> None:
    """The writer's refresh text for one written hour: 1m/5m/1h the hour, 1d its day."""
    batch = hour_batch("EURUSD", T0, 5, seed=1)
    calls = [refresh_sql(v, w) for v, w in refresh_plan(written_windows(Plan(inserts=[batch])))]
    first = datetime.fromtimestamp(int(batch.ticks.ts_ms.min()) / 1000, UTC)
    assert calls[0].startswith("CALL refresh_continuous_aggregate('ohlcv_1m', ")
    assert first.replace(second=0, microsecond=0).isoformat() in calls[0]
    day = datetime.fromtimestamp(T0 / 1000, UTC).replace(hour=0)
    assert calls[-1] == (
        f"CALL refresh_continuous_aggregate('ohlcv_1d', '{day.isoformat()}'::timestamptz, "
        f"'{(day + timedelta(days=1)).isoformat()}'::timestamptz)"
    )
