"""Scale end to end with the synthetic source (no stand-in, no ``../shared``):

* **3 replicas of every data-path stage**, one replica of each SIGKILLed mid-ingest: the
  survivors take the dead members' partitions once the broker expires their sessions, and the
  database ends equal to the generated rows (every hour row by row, none lost, none duplicated),
  every unit in the ledger and the request ``completed`` with every unit accounted for;
* **a 3 M-tick smoke of the scale run** (``bench/bench_scale.py --ticks 3e6`` in small): one
  request, its completion event, row count and per-unit checksum of every hour.

Both run on a fresh database and fresh topics (``support.pipeline``), ~1.5 min together on 2
cores.
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime

import asyncpg
import pytest
from rich.console import Console
from support.golden_db import assert_hour_equals_golden
from support.pipeline import Pipeline, pipeline_on_fresh_database
from support.scale import SyntheticPlan, golden_hour, plan_hours, plan_ticks, verify
from tickpipe_cli.progress import PlainDisplay
from tickpipe_cli.requests import WaitResult, publish, wait
from tickpipe_shared.config import Settings
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.synthetic.ticks import SyntheticParams
from tickpipe_shared.wire.requests import FetchRequest

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

DATA_PATH = ("fetcher", "decoder", "validator", "writer")
REPLICAS = 3
#: aiokafka's default session timeout: how long a SIGKILLed member keeps its partitions.
SESSION_TIMEOUT_S = 10.0


def _env(ticks_per_hour: int) -> dict[str, str]:
    return {
        "TICKPIPE_SYNTHETIC_SOURCE": "1",
        "TICKPIPE_SYNTHETIC_TICKS_PER_HOUR": str(ticks_per_hour),
        "TICKPIPE_SYNTHETIC_SEED": "11",
        "TICKPIPE_MAX_BATCH_BYTES": "200000",  # hours in 2–3 parts: kills land between parts
        "TICKPIPE_WRITER_BATCH_ROWS": "20000",
        "TICKPIPE_WRITER_BATCH_SECONDS": "0.3",
        "TICKPIPE_FETCH_CONCURRENCY": "1",
    }


def _params(ticks_per_hour: int) -> SyntheticParams:
    return SyntheticParams(ticks_per_hour=ticks_per_hour, seed=11)


def _start(p: Pipeline, replicas: int) -> None:
    asyncio.run(_migrate(p.env["TICKPIPE_DATABASE_URL"]))  # as `tickpipe db migrate` would
    names = [
        *(f"{s}-{i}" if i > 1 else s for s in DATA_PATH for i in range(1, replicas + 1)),
        "tracker",
    ]
    for name in names:  # launched together: their imports and group joins overlap
        p.launch(name)
    for name in names:
        p.wait_healthy(name, timeout=120)


def _request(p: Pipeline, plan: SyntheticPlan, rid: str) -> FetchRequest:
    request = FetchRequest(
        source="synthetic", instrument=plan.instrument, from_=plan.from_dt, to=plan.to_dt,
        request_id=rid,
    )  # fmt: skip
    settings = Settings(topic_prefix=p.env["TICKPIPE_TOPIC_PREFIX"])
    asyncio.run(publish(settings, request))
    return request


def _wait(p: Pipeline, request: FetchRequest, timeout: float) -> WaitResult:
    settings = Settings(topic_prefix=p.env["TICKPIPE_TOPIC_PREFIX"])
    return asyncio.run(wait(settings, request, timeout, PlainDisplay(Console(quiet=True))))


async def _migrate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()


async def _stored_units(dsn: str, plan: SyntheticPlan) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM ingest_log WHERE instrument = $1 AND state = 'stored'",
                plan.instrument,
            )
        )
    finally:
        await conn.close()


async def _check_database(dsn: str, plan: SyntheticPlan, golden_rows: bool) -> None:
    conn = await asyncpg.connect(dsn, command_timeout=600)
    try:
        result = await verify(conn, plan)
        assert result.ok, f"{len(result.mismatches)} hours differ: {result.mismatches[:5]}"
        assert result.rows_stored == plan.ticks
        ledger = await conn.fetch(
            """SELECT unit_start, state, rows, part_count, parts_written FROM ingest_log
               WHERE instrument = $1 ORDER BY unit_start""",
            plan.instrument,
        )
        want = {
            datetime.fromtimestamp(s / 1000, tz=UTC): ("stored", n) if n else ("empty", 0)
            for s, n in zip(plan.starts.tolist(), plan.counts.tolist(), strict=True)
        }
        assert {r["unit_start"]: (r["state"], r["rows"]) for r in ledger} == want
        assert all(r["parts_written"] == r["part_count"] for r in ledger)
        if golden_rows:
            for start, n in zip(plan.starts.tolist(), plan.counts.tolist(), strict=True):
                if n:
                    await assert_hour_equals_golden(conn, golden_hour(plan, start))
    finally:
        await conn.close()


def test_three_replicas_per_stage_survive_a_sigkill_of_one_replica_each(
    infra: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ticks_per_hour = 8_000
    # Thursday 00:00 → Monday 00:00 UTC: 48 open hours, the FX weekend closed in between.
    plan = plan_hours("SYNEURUSD", datetime(2020, 1, 9, tzinfo=UTC), 96, _params(ticks_per_hour))
    with pipeline_on_fresh_database(
        infra, tmp_path_factory.mktemp("standin"), tmp_path_factory.mktemp("logs"),
        _env(ticks_per_hour), prefix="tp_replicas",
    ) as p:  # fmt: skip
        _start(p, REPLICAS)
        request = _request(p, plan, "replicas-kill")
        dsn = p.env["TICKPIPE_DATABASE_URL"]
        with_ticks = int((plan.counts > 0).sum())
        deadline = time.monotonic() + 120
        while asyncio.run(_stored_units(dsn, plan)) < with_ticks // 5:
            assert time.monotonic() < deadline, "no progress before the kills"
            time.sleep(0.2)
        killed_at = time.monotonic()
        for stage in DATA_PATH:
            p.kill(f"{stage}-2", signal.SIGKILL)
        stored_at_kill = asyncio.run(_stored_units(dsn, plan))
        assert stored_at_kill < with_ticks, "the request finished before the kills landed"
        result = _wait(p, request, timeout=180)
        recovered_s = time.monotonic() - killed_at
        assert result.finished, f"no completion event {recovered_s:.0f} s after the kills"
        assert result.failed == 0 and result.suspect_empty == 0
        assert result.stored + result.empty == len(plan.starts) == result.expected
        assert result.ticks == plan.ticks
        asyncio.run(_check_database(dsn, plan, golden_rows=True))
        # The dead members' partitions waited for their sessions to expire (10 s), then a
        # rebalance; the rest of the work after it is seconds. A stall longer than a few session
        # timeouts would mean a rebalance hung on a member (max.poll.interval).
        assert recovered_s < 6 * SESSION_TIMEOUT_S + 60, f"recovery took {recovered_s:.0f} s"


def test_scale_smoke_three_million_ticks_verified_by_checksum(
    infra: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ticks_per_hour = 36_000
    plan = plan_ticks("SYNGBPUSD", datetime(2020, 3, 2, tzinfo=UTC), 3_000_000,
                      _params(ticks_per_hour))  # fmt: skip
    with pipeline_on_fresh_database(
        infra, tmp_path_factory.mktemp("standin"), tmp_path_factory.mktemp("logs"),
        {**_env(ticks_per_hour), "TICKPIPE_MAX_BATCH_BYTES": "900000",
         "TICKPIPE_WRITER_BATCH_ROWS": "100000", "TICKPIPE_FETCH_CONCURRENCY": "4"},
        prefix="tp_scale",
    ) as p:  # fmt: skip
        _start(p, 1)
        request = _request(p, plan, "scale-smoke")
        result = _wait(p, request, timeout=240)
        assert result.finished and result.failed == 0
        assert result.stored == int((plan.counts > 0).sum()) and result.ticks == plan.ticks
        asyncio.run(_check_database(p.env["TICKPIPE_DATABASE_URL"], plan, golden_rows=False))
