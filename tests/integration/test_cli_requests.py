"""``tickpipe request --dry-run``, ``--wait --quiet`` timing out, and ``tickpipe requests
list|show|cancel`` against the local Kafka + PostgreSQL, with instrument metadata from the
in-process stand-in (skipped without ``../shared``). The CLI runs as a subprocess, as a user
runs it; each test has its own topic prefix and database."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.shared_data import SHARED_MISSING, locate_shared_dir
from tickpipe_dev.standin import server as standin
from tickpipe_fetcher.cancellations import CancellationRegistry
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.topics import ensure_topics


@pytest.fixture
async def server() -> AsyncIterator[standin.StandinServer]:
    shared = locate_shared_dir()
    if shared is None:
        pytest.skip(SHARED_MISSING)
    srv = await standin.start_standin(shared / "data" / "dukascopy")
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def env(
    infra: Settings, dsn: str, server: standin.StandinServer, tmp_path: Path
) -> dict[str, str]:
    prefix = f"cli{uuid.uuid4().hex[:8]}."
    await ensure_topics(Settings(kafka_bootstrap=infra.kafka_bootstrap, topic_prefix=prefix,
                                 topic_partitions=2))  # fmt: skip
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("TICKPIPE_")}
    return {**base, "TICKPIPE_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
            "TICKPIPE_TOPIC_PREFIX": prefix, "TICKPIPE_DATABASE_URL": dsn,
            "TICKPIPE_DUKASCOPY_JSON_URL": server.json_url,
            "TICKPIPE_DUKASCOPY_BI5_URL": server.datafeed_url,
            "TICKPIPE_INSTRUMENT_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200"}  # fmt: skip


async def tickpipe(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "tickpipe", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_dry_run_prints_the_plan_and_publishes_nothing(env: dict[str, str]) -> None:
    args = ["request", "EURUSD", "--from", "2019-02-01T20:00", "--to", "2019-02-04",
            "--source", "dukascopy-bi5", "--dry-run"]  # fmt: skip
    code, out, err = await tickpipe(env, *args, "--json")
    assert code == 0, err
    plan = json.loads(out)
    # Friday 20:00 UTC to Monday: 52 hours, of which the FX week has 2 open on Friday (until
    # 17:00 New York = 22:00 UTC) and 2 on Sunday (from 22:00 UTC).
    assert (plan["units"], plan["already_stored"], plan["schedule_known"]) == (52, 0, True)
    assert plan["closed_market"] == 48
    assert plan["est_rows"] is None  # nothing stored yet in this fresh database
    assert plan["requests"] == 52 and plan["min_seconds"] == pytest.approx(4.2)
    code, out, _ = await tickpipe(env, *args)
    assert code == 0
    assert "dry run: nothing published" in out and "units to download:        52" in out
    code, out, _ = await tickpipe(env, "requests", "list", "--json")
    assert (code, json.loads(out)) == (0, [])  # nothing was published
    bad = ["request", "NOSUCH", "--from", "2019-02-04", "--to", "2019-02-05", "--dry-run"]
    code, _, err = await tickpipe(env, *bad, "--source", "dukascopy-bi5")
    assert code == 2 and "NOSUCH" in err


async def test_requests_list_show_and_cancel(env: dict[str, str], infra: Settings) -> None:
    code, out, err = await tickpipe(env, "request", "EURUSD", "--from", "2019-02-04", "--to",
                                    "2019-02-05", "--source", "dukascopy-bi5")  # fmt: skip
    assert code == 0, err
    rid = out.split("published request ")[1].split(":")[0].strip()
    code, out, _ = await tickpipe(env, "requests", "list", "--json")
    [listed] = json.loads(out)
    assert listed["request_id"] == rid and listed["state"] == {"status": "published"}
    assert listed["request"]["instrument"] == "EURUSD"
    code, out, _ = await tickpipe(env, "requests", "list")
    assert code == 0 and rid in out and "published" in out

    prefix = env["TICKPIPE_TOPIC_PREFIX"]
    registry = CancellationRegistry(
        Settings(kafka_bootstrap=infra.kafka_bootstrap, topic_prefix=prefix)
    )
    registry.start()
    try:
        code, out, _ = await tickpipe(env, "requests", "cancel", rid)
        assert (code, out.strip()) == (0, f"cancellation of request {rid} published")
        for _ in range(100):
            if registry.is_cancelled(rid):
                break
            await asyncio.sleep(0.1)
        assert registry.is_cancelled(rid) and not registry.is_cancelled("other")
    finally:
        await registry.stop()
    code, out, _ = await tickpipe(env, "requests", "show", rid, "--json")
    assert code == 0 and json.loads(out)["cancel_requested"] is True
    code, out, _ = await tickpipe(env, "requests", "show", rid)
    assert "published (cancel requested)" in out and "instrument: EURUSD" in out
    code, _, err = await tickpipe(env, "requests", "show", "no-such-id")
    assert code == 2 and "no request no-such-id" in err


async def test_wait_without_a_tracker_times_out_with_exit_3(env: dict[str, str]) -> None:
    code, out, _ = await tickpipe(env, "request", "EURUSD", "--from", "2019-02-04", "--to",
                                  "2019-02-05", "--source", "dukascopy-bi5", "--wait",
                                  "--timeout", "2", "--quiet")  # fmt: skip
    assert code == 3
    assert len(out.strip().splitlines()) == 1 and "timed out after 2 s" in out
