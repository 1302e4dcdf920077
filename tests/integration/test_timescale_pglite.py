"""The TimescaleDB schema, OHLCV queries and source candles against a real TimescaleDB: PGlite +
TimescaleDB 2.23.

No Debian package of TimescaleDB exists, so CI runs ``dev/pglite/run-sql.mjs`` (PostgreSQL with
TimescaleDB compiled to WASM, in Node, in memory): it applies the migrations exactly as
``tickpipe_shared.db.migrate`` does on TimescaleDB and then runs the steps this test sends —
SQL texts taken from the Python code itself (the writer's binary COPY rows, the writer's refresh
calls, ``db.ohlcv.candles_sql``). The same ticks go through the writer into the local plain
PostgreSQL, and every candle from the continuous aggregates must equal the plain views' (and a
Python reference). Source candles go the same way: the writer's COPY bytes and unit-replace
``DELETE`` into the ``candles`` hypertable, compressed chunks included, read back with
``db.ohlcv.source_candles_sql`` and compared with the plain ``candles`` table.
``bin/bootstrap`` installs Node and ``dev/pglite/node_modules``.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
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
from tickpipe_shared.candles import CANDLE_COLUMNS, Candles
from tickpipe_shared.config import Settings
from tickpipe_shared.db.migrate import load_migrations, migrate, split_after_commit
from tickpipe_shared.db.ohlcv import (
    TIMEFRAMES,
    candles,
    candles_sql,
    source_candles,
    source_candles_sql,
)
from tickpipe_shared.kinds import Kind
from tickpipe_shared.units import HOUR_MS, Unit, plan_units
from tickpipe_shared.wire.batch import BatchMeta, CandleBatch, TickBatch
from tickpipe_writer.aggregates import refresh_plan, refresh_sql, written_windows
from tickpipe_writer.copy_binary import (
    CANDLE_COPY_COLUMNS,
    SIGNATURE,
    TICK_COPY_COLUMNS,
    TRAILER,
    encode_candle_rows,
    encode_tick_rows,
)
from tickpipe_writer.plan import Plan, UnitWindow
from tickpipe_writer.store import DELETE_CANDLES, write

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
                m.unit.instrument,
                _iso(datetime.fromtimestamp(m.unit.start_ms / 1000, UTC)),
                _iso(datetime.fromtimestamp(m.unit.end_ms / 1000, UTC)),
            ],
        )
        self.copy(f"{name}_copy", [batch])
        window = UnitWindow(m.unit.instrument, m.unit.kind, m.unit.start_ms, m.unit.end_ms)
        return Plan(deletes=[window], inserts=[batch])

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
        "candles": "30 days",
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
        "ticks",
        "candles",
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
    late_day = datetime.fromtimestamp(late.meta.unit.start_ms / 1000, UTC).replace(hour=0)
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


# --------------------------------------------------------------------------- source candles

SERIES = (("EURUSD", "candles:1m:bid"), ("EURUSD", "candles:1m:ask"), ("USDJPY", "candles:1h:mid"))
C_FROM = datetime(2021, 1, 1, tzinfo=UTC)
C_TO = datetime(2021, 6, 1, tzinfo=UTC)


def candle_unit(instrument: str, kind: str, day: datetime, n: int, seed: int) -> CandleBatch:
    """The unit of ``kind`` holding ``day``: ``n`` candles from its start, one timeframe apart,
    random-walk prices (scale 5, or 3 for USDJPY), every fourth volume NaN, a flag on one."""
    start_ms = int(day.timestamp() * 1000)
    unit = plan_units("dukascopy-json", instrument, kind, start_ms, start_ms + 1)[0]
    step = Kind.parse(kind).timeframe.duration_ms  # type: ignore[union-attr]
    assert step is not None
    rng = np.random.default_rng(seed)
    o = (110_000 + np.cumsum(rng.integers(-9, 10, size=n))).astype(np.int64)
    c = o + rng.integers(-5, 6, size=n)
    vol = np.where(np.arange(n) % 4 == 3, np.nan, rng.integers(1, 500, size=n) / 4)
    candles_ = Candles(
        unit.start_ms + np.arange(n, dtype=np.int64) * step, o, np.maximum(o, c) + 3,
        np.minimum(o, c) - 2, c, vol,
    )  # fmt: skip
    meta = BatchMeta(
        unit=Unit("dukascopy-json", instrument, kind, unit.start_ms, unit.end_ms),
        part=0,
        part_count=1,
        rows=n,
        price_scale=3 if instrument == "USDJPY" else 5,
        payload_sha256=f"{seed:064x}",
        request_id="pglite",
        fetched_at_ms=unit.start_ms,
        decoded_at_ms=unit.start_ms,
        columns=list(CANDLE_COLUMNS),
    )
    flags = np.zeros(n, dtype=np.uint16)
    flags[n // 2] = 1 << 5
    return CandleBatch(meta, candles_).with_flags(flags, {"rule": 1}, unit.start_ms)


def candle_rows(
    batches: Sequence[CandleBatch], instrument: str, kind: str
) -> list[tuple[Any, ...]]:
    """The rows the series must hold: the last written batch of each unit, as exact decimals."""
    last: dict[int, CandleBatch] = {}
    for b in batches:
        if (b.meta.unit.instrument, b.meta.unit.kind) == (instrument, kind):
            last[b.meta.unit.start_ms] = b
    out = []
    for b in last.values():
        c, scale = b.candles, b.meta.price_scale
        for i in range(len(c)):
            vol = float(c.volume[i])
            out.append(
                (
                    datetime.fromtimestamp(int(c.ts_ms[i]) / 1000, UTC),
                    *(f"{int(getattr(c, k)[i]) / 10**scale:.{scale}f}"
                      for k in ("open", "high", "low", "close")),
                    None if np.isnan(vol) else vol,
                    int(b.flags[i]) if b.flags is not None else 0,
                )
            )  # fmt: skip
    return sorted(out)


def as_rows(rows: Sequence[dict[str, Any]], scale: int) -> list[tuple[Any, ...]]:
    """Runner or asyncpg rows of ``source_candles_sql`` in the form of :func:`candle_rows`."""
    out = []
    for r in rows:
        ts = r["ts"]
        if isinstance(ts, str):
            ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        out.append(
            (ts, *(f"{r[k]:.{scale}f}" for k in ("open", "high", "low", "close")), r["volume"],
             r["flags"])
        )  # fmt: skip
    return out


class CandleSteps(Steps):
    def copy_candles(self, name: str, batches: Sequence[CandleBatch], **extra: Any) -> None:
        """The writer's binary COPY of candle batches (the bytes ``store.copy_rows`` sends)."""
        blob = SIGNATURE + b"".join(encode_candle_rows(b) for b in batches) + TRAILER
        self.add(
            name,
            f"COPY candles ({', '.join(CANDLE_COPY_COLUMNS)}) FROM '/dev/blob' "
            "WITH (FORMAT binary)",
            blob_base64=base64.b64encode(blob).decode(),
            **extra,
        )

    def replace_candles(self, name: str, batch: CandleBatch) -> None:
        """The writer's unit replace: its ``DELETE_CANDLES`` of the unit window, then the COPY."""
        m, k = batch.meta, Kind.parse(batch.meta.unit.kind)
        self.add(
            f"{name}_delete",
            DELETE_CANDLES,
            params=[[m.unit.instrument], [str(k.timeframe)], [str(k.side)],
                    [_iso(datetime.fromtimestamp(m.unit.start_ms / 1000, UTC))],
                    [_iso(datetime.fromtimestamp(m.unit.end_ms / 1000, UTC))]],
        )  # fmt: skip
        self.copy_candles(f"{name}_copy", [batch])

    def read(self, phase: str) -> None:
        for instrument, kind in SERIES:
            k = Kind.parse(kind)
            self.add(
                f"{phase}:{instrument}:{kind}",
                source_candles_sql(),
                params=[instrument, str(k.timeframe), k.side, _iso(C_FROM), _iso(C_TO)],
            )

    def chunks(self, name: str) -> None:
        self.add(
            name,
            "SELECT chunk_name, is_compressed FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'candles' ORDER BY range_start",
        )


async def test_timescaledb_candles_hypertable_compression_and_unit_replace(
    plain: asyncpg.Connection, tmp_path: Path
) -> None:
    s = CandleSteps()
    s.add(
        "dimension",
        "SELECT time_interval::text AS interval FROM timescaledb_information.dimensions "
        "WHERE hypertable_name = 'candles'",
    )
    s.add(
        "compression_settings",
        "SELECT attname, segmentby_column_index, orderby_column_index, orderby_asc "
        "FROM timescaledb_information.compression_settings WHERE hypertable_name = 'candles' "
        "ORDER BY attname",
    )
    s.add(
        "policy",
        "SELECT config::text AS config FROM timescaledb_information.jobs "
        "WHERE proc_name = 'policy_compression' AND hypertable_name = 'candles'",
    )
    s.add(
        "key",
        "SELECT array_agg(a.attname ORDER BY k.n)::text AS cols FROM pg_index i "
        "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(att, n) "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.att "
        "WHERE i.indrelid = 'candles'::regclass AND i.indisprimary",
    )

    # Phase 1: days of 1m bid/ask candles in January and March (two chunks), a month unit of
    # 1h mid candles; written as the writer does.
    first = [
        candle_unit("EURUSD", "candles:1m:bid", datetime(2021, 1, 4, tzinfo=UTC), 50, seed=1),
        candle_unit("EURUSD", "candles:1m:bid", datetime(2021, 3, 2, tzinfo=UTC), 40, seed=2),
        candle_unit("EURUSD", "candles:1m:ask", datetime(2021, 1, 4, tzinfo=UTC), 50, seed=3),
        candle_unit("USDJPY", "candles:1h:mid", datetime(2021, 2, 1, tzinfo=UTC), 30, seed=4),
    ]
    s.copy_candles("initial_copy", first)
    s.read("initial")

    # Phase 2: every chunk compressed, then a unit replaced inside a compressed chunk (fewer
    # candles, other prices) and a candle written twice refused by the identity, compressed
    # or not.
    s.add(
        "compress",
        "SELECT count(compress_chunk(c, if_not_compressed => true)) AS n "
        "FROM show_chunks('candles') c",
    )
    s.chunks("chunks_compressed")
    redo = candle_unit("EURUSD", "candles:1m:bid", datetime(2021, 1, 4, tzinfo=UTC), 20, seed=9)
    s.replace_candles("replace", redo)
    s.read("replaced")
    s.copy_candles("duplicate", [first[2]], expect_error="duplicate key value")

    # Phase 3: a late unit in a new chunk; the compression policy, run as its job, compresses
    # it (the chunk is years old).
    late = candle_unit("EURUSD", "candles:1m:ask", datetime(2021, 5, 20, tzinfo=UTC), 30, seed=5)
    s.copy_candles("late_copy", [late])
    s.add(
        "run_policy",
        """DO $$ DECLARE j int; BEGIN
             FOR j IN SELECT job_id FROM timescaledb_information.jobs
                      WHERE proc_name = 'policy_compression' AND hypertable_name = 'candles'
             LOOP CALL run_job(j); END LOOP; END $$""",
        exec=True,
    )
    s.chunks("chunks_after_policy")
    s.read("policy")
    out = run_pglite(s, tmp_path)
    steps = out["steps"]

    # --- the schema --------------------------------------------------------------------------
    assert steps["dimension"]["rows"] == [{"interval": "30 days"}]
    settings = {r["attname"]: r for r in steps["compression_settings"]["rows"]}
    segments = {k: v["segmentby_column_index"] for k, v in settings.items()}
    assert {k: v for k, v in segments.items() if v} == {"instrument": 1, "timeframe": 2, "side": 3}
    assert settings["ts"]["orderby_column_index"] == 1 and settings["ts"]["orderby_asc"]
    (policy,) = steps["policy"]["rows"]
    assert '"compress_after": "7 days"' in policy["config"]
    assert steps["key"]["rows"] == [{"cols": "{instrument,timeframe,side,ts}"}]
    assert "duplicate key value" in steps["duplicate"]["error"]

    # --- the rows, phase by phase, against plain PostgreSQL through the writer ---------------
    async def compare(phase: str, written: list[CandleBatch]) -> None:
        for instrument, kind in SERIES:
            scale = 3 if instrument == "USDJPY" else 5
            k = Kind.parse(kind)
            want = candle_rows(written, instrument, kind)
            got_plain = await source_candles(
                plain, instrument, str(k.timeframe), str(k.side), C_FROM, C_TO
            )
            assert as_rows([c.to_dict() | {"ts": c.ts} for c in got_plain], scale) == want
            assert as_rows(steps[f"{phase}:{instrument}:{kind}"]["rows"], scale) == want, phase
            assert want

    written = list(first)
    await write(plain, first)
    await compare("initial", written)

    # 30-day chunks from the epoch: [Jan 3, Feb 2) holds January and February 1, [Feb 2, Mar 4)
    # March 2.
    assert steps["compress"]["rows"][0]["n"] == 2
    assert all(c["is_compressed"] for c in steps["chunks_compressed"]["rows"])
    await write(plain, [redo])
    written.append(redo)
    await compare("replaced", written)
    with pytest.raises(asyncpg.UniqueViolationError):
        async with plain.transaction():
            await plain.copy_to_table(
                "candles",
                source=io.BytesIO(SIGNATURE + encode_candle_rows(first[2]) + TRAILER),
                columns=list(CANDLE_COPY_COLUMNS),
                format="binary",
            )

    await write(plain, [late])
    written.append(late)
    await compare("policy", written)
    after = steps["chunks_after_policy"]["rows"]
    assert len(after) == 3 and all(c["is_compressed"] for c in after)
