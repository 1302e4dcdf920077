"""Whole-pipeline throughput: from a published request to committed rows, as processes.

Run: ``uv run python bench/bench_pipeline.py [--ticks N] [--data real|synthetic]`` with the
local stack up (``uv run tickpipe-stack up --infra-only``: Kafka and PostgreSQL only — the
bench starts its own stand-in and five services, with a unique topic prefix, consumer groups
and a scratch database, and drops the database at the end).

Data. ``real`` (the default when ``../shared`` is present, or ``TICKPIPE_SHARED_DIR``): the 48
recorded EURUSD ``.bi5`` hours of 2019-02-04/05 (~263k ticks, ~5.5k a busy hour) copied as they
are onto further Monday–Tuesday and Wednesday–Thursday pairs of following weeks until ``--ticks``
is reached (the bytes are real; only their dates are new, all weekdays). ``synthetic``: the same
layout with self-made hours of ``--ticks-per-hour`` ticks (random walks, LZMA like Dukascopy's;
48 distinct hours generated once and repeated).

One request per two-day block (48 hour units each) is published through
``tickpipe_cli.requests.publish``; the clock runs from the first publish to the poll of the
database that sees every unit in ``ingest_log`` as ``stored``/``empty`` (ticks commit in the same
transaction), then ``count(*)`` of ``ticks`` is checked against the ledger's rows and against the
decoded ticks of the payloads. Figures printed:

* ticks/s end to end (the issue's figure), and against the in-process baseline measured in the
  same run: ``decode_bi5_ticks`` of the same payloads on one core (the pipeline's first CPU
  stage with no Kafka, no validation and no database), and against ``psql``'s binary ``\\copy``
  of the same stored rows back into the same ``ticks`` (emptied first; dumped untimed) — the
  ratio pipeline / raw COPY is the issue's target (≥ 0.5);
* per stage, from each service's ``/metrics``: batches, busy seconds (sum of
  ``tickpipe_stage_latency_seconds``, poll to commit) and busy share of the wall time — the
  stage closest to 100 % is the bottleneck. Services share the machine's cores, so shares can
  add up to more than the cores only when stages wait on I/O.
"""

from __future__ import annotations

import argparse
import asyncio
import lzma
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import numpy as np
from tickpipe_cli.requests import publish
from tickpipe_decoder.formats.dukascopy_bi5 import decode_bi5_ticks
from tickpipe_shared.config import Settings
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.wire.requests import FetchRequest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from bench_writer import libpq_env, psql_binary  # noqa: E402
from support.pipeline import SERVICES, Pipeline, pipeline_on_fresh_database  # noqa: E402

FIRST_DAY = datetime(2019, 2, 4, tzinfo=UTC)  # a Monday: the recorded sample's first day
BLOCK_HOURS = 48
INSTRUMENT = "EURUSD"
META_FILE = "meta/raw-meta-data-2026-07-13.json"
BI5_TICK = np.dtype(
    [("ms", ">u4"), ("ask", ">u4"), ("bid", ">u4"), ("ask_vol", ">f4"), ("bid_vol", ">f4")]
)
#: The services' production defaults, over the e2e helper's quick-test overrides.
SERVICE_ENV = {"TICKPIPE_WRITER_BATCH_SECONDS": "1.0", "TICKPIPE_FETCH_BACKOFF_BASE_S": "0.5"}


def shared_dir() -> Path | None:
    env = os.environ.get("TICKPIPE_SHARED_DIR")
    d = (Path(env) if env else REPO.parent / "shared") / "data" / "dukascopy"
    return d if d.is_dir() else None


def bi5_path(root: Path, hour: datetime) -> Path:
    """Where the datafeed keeps an hour (months are zero-based)."""
    return root / f"bi5/{INSTRUMENT}/{hour:%Y}/{hour.month - 1:02d}/{hour:%d}/{hour:%H}h_ticks.bi5"


def synthetic_hour(seed: int, n: int) -> bytes:
    """A ``.bi5`` hour of ``n`` ticks: increasing ms, EURUSD-like random-walk points."""
    rng = np.random.default_rng(seed)
    rec = np.zeros(n, dtype=BI5_TICK)
    rec["ms"] = np.sort(rng.choice(3_600_000, size=n, replace=False))
    bid = 113_500 + np.cumsum(rng.integers(-3, 4, size=n))
    rec["bid"], rec["ask"] = bid, bid + rng.integers(0, 6, size=n)
    vols = np.array([0.5, 1.0, 1.25, 2.06, 0.01, 3.75], dtype=np.float32)
    rec["ask_vol"], rec["bid_vol"] = vols[rng.integers(0, 6, n)], vols[rng.integers(0, 6, n)]
    return lzma.compress(rec.tobytes(), format=lzma.FORMAT_ALONE)


@dataclass
class Tree:
    root: Path
    blocks: list[datetime]  # first hour of each 48-hour block
    payloads: list[tuple[bytes, int]]  # every hour: payload, unit start ms
    ticks: int  # decoded ticks of every payload


def block_start(k: int) -> datetime:
    """Block k: Mon–Tue (even k) or Wed–Thu (odd k) of week k // 2 from the sample's Monday."""
    return FIRST_DAY + timedelta(days=7 * (k // 2) + 2 * (k % 2))


def build_tree(root: Path, args: argparse.Namespace, sample: Path | None) -> Tree:
    """The stand-in's tree: instrument metadata and enough 48-hour blocks for ``--ticks``."""
    (root / "meta").mkdir(parents=True)
    if args.data == "real":
        assert sample is not None
        shutil.copy(sample / META_FILE, root / META_FILE)
        block = [bi5_path(sample, FIRST_DAY + timedelta(hours=h)).read_bytes()
                 for h in range(BLOCK_HOURS)]  # fmt: skip
    else:
        if sample is not None:
            shutil.copy(sample / META_FILE, root / META_FILE)
        else:
            sys.exit("--data synthetic still needs ../shared for the instrument list")
        block = [synthetic_hour(h, args.ticks_per_hour) for h in range(BLOCK_HOURS)]
    start_ms = int(FIRST_DAY.timestamp() * 1000)
    per_block = sum(len(decode_bi5_ticks(b, start_ms)) for b in block)
    n_blocks = max(1, math.ceil(args.ticks / per_block))
    blocks = [block_start(k) for k in range(n_blocks)]
    payloads = []
    for first in blocks:
        for h, payload in enumerate(block):
            hour = first + timedelta(hours=h)
            path = bi5_path(root, hour)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(payload)
            payloads.append((payload, int(hour.timestamp() * 1000)))
    return Tree(root, blocks, payloads, per_block * n_blocks)


def decode_baseline(payloads: list[tuple[bytes, int]]) -> float:
    """Seconds to decode every payload in this process (one core)."""
    t = time.perf_counter()
    for payload, start in payloads:
        decode_bi5_ticks(payload, start)
    return time.perf_counter() - t


_SAMPLE = re.compile(r'^(tickpipe_stage_latency_seconds_(?:sum|count))\{stage="([^"]+)"\} (\S+)$')


def stage_figures(p: Pipeline) -> dict[str, tuple[float, float]]:
    """stage → (batches, busy seconds) from every service's ``/metrics``."""
    out: dict[str, list[float]] = {}
    for name in SERVICES:
        for line in p.metrics(name).splitlines():
            m = _SAMPLE.match(line)
            if m:
                fig = out.setdefault(m.group(2), [0.0, 0.0])
                fig[0 if m.group(1).endswith("count") else 1] += float(m.group(3))
    return {k: (v[0], v[1]) for k, v in out.items()}


def raw_copy_seconds(dsn: str, path: Path) -> float:
    """Seconds of ``psql``'s binary ``\\copy`` of the stored ticks back into ``ticks`` (the
    same hypertable, emptied first): the baseline of the same rows in the same run. The rows
    are dumped in binary first (not timed)."""
    cols = "instrument, ts, bid_points, ask_points, bid_volume, ask_volume, flags"
    cmd = [psql_binary(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c"]
    env = {**os.environ, **libpq_env(dsn)}
    dump = f"\\copy (SELECT {cols} FROM ticks ORDER BY instrument, ts) TO '{path}' (FORMAT binary)"
    subprocess.run([*cmd, dump], env=env, check=True)
    subprocess.run([*cmd, "TRUNCATE ticks"], env=env, check=True)
    t = time.perf_counter()
    subprocess.run([*cmd, f"\\copy ticks({cols}) FROM '{path}' (FORMAT binary)"], env=env,
                   check=True)  # fmt: skip
    return time.perf_counter() - t


async def run(p: Pipeline, tree: Tree, limit_s: float) -> tuple[float, int, int, int]:
    """Publish one request per block; seconds until every unit is in the ledger; units, ledger
    rows, ``count(*)`` of ticks."""
    settings = Settings(topic_prefix=p.env["TICKPIPE_TOPIC_PREFIX"])
    units = len(tree.blocks) * BLOCK_HOURS
    conn = await asyncpg.connect(p.env["TICKPIPE_DATABASE_URL"])
    try:
        await migrate(conn)  # as `tickpipe db migrate` would; the writer migrates lazily
        requests = [
            FetchRequest(
                source="dukascopy-bi5",
                instrument=INSTRUMENT,
                from_=first,
                to=first + timedelta(hours=BLOCK_HOURS),
                request_id=f"bench-pipeline-{k}",
            )
            for k, first in enumerate(tree.blocks)
        ]
        t0 = time.perf_counter()
        for request in requests:
            await publish(settings, request)
        deadline = t0 + limit_s
        while True:
            done, rows = await conn.fetchrow(
                """SELECT count(*) FILTER (WHERE state IN ('stored', 'empty')),
                          coalesce(sum(rows), 0)::bigint
                   FROM ingest_log"""
            )
            if done >= units:
                elapsed = time.perf_counter() - t0
                break
            if time.perf_counter() > deadline:
                raise SystemExit(f"timeout: {done}/{units} units after {limit_s:.0f} s")
            await asyncio.sleep(0.2)
        stored = int(await conn.fetchval("SELECT count(*) FROM ticks"))
        return elapsed, units, int(rows), stored
    finally:
        await conn.close()


def main() -> None:
    sample = shared_dir()
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ticks", type=int, default=3_000_000, help="at least this many ticks")
    ap.add_argument("--data", choices=("real", "synthetic"),
                    default="real" if sample else "synthetic")  # fmt: skip
    ap.add_argument("--ticks-per-hour", type=int, default=6_000, help="synthetic hours only")
    ap.add_argument("--fetch-rate", type=float, default=0.0,
                    help="TICKPIPE_FETCH_RATE_PER_HOST (requests/s to the stand-in); 0, the "
                    "default, lifts the politeness limit (production: 10)")  # fmt: skip
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--keep-logs", action="store_true", help="keep the services' logs")
    args = ap.parse_args()
    if args.data == "real" and sample is None:
        sys.exit("--data real needs ../shared/data/dukascopy (or TICKPIPE_SHARED_DIR)")

    tmp = Path(tempfile.mkdtemp(prefix="tp_bench_pipeline_"))
    try:
        t = time.perf_counter()
        tree = build_tree(tmp / "standin", args, sample)
        print(f"{args.data} data: {len(tree.payloads)} hour units in {len(tree.blocks)} requests "
              f"of {BLOCK_HOURS} h, {tree.ticks:,} ticks, "
              f"{sum(len(b) for b, _ in tree.payloads) / 1e6:.1f} MB of .bi5 "
              f"(tree built in {time.perf_counter() - t:.1f} s); fetch rate limit "
              f"{args.fetch_rate or 'off'}")  # fmt: skip
        base_s = min(decode_baseline(tree.payloads) for _ in range(2))
        (tmp / "logs").mkdir()
        env = {**SERVICE_ENV, "TICKPIPE_FETCH_RATE_PER_HOST": str(args.fetch_rate)}
        with pipeline_on_fresh_database(
            Settings(), tree.root, tmp / "logs", env, prefix="tp_bench"
        ) as p:
            t = time.perf_counter()
            p.start_all()
            print(f"stand-in and {len(SERVICES)} services healthy in "
                  f"{time.perf_counter() - t:.1f} s; publishing\n")  # fmt: skip
            elapsed, units, ledger_rows, stored = asyncio.run(run(p, tree, args.timeout))
            stages = stage_figures(p)
            copy_s = raw_copy_seconds(p.env["TICKPIPE_DATABASE_URL"], tmp / "ticks.copy")
    finally:
        if args.keep_logs:
            print(f"logs kept in {tmp / 'logs'}")
            shutil.rmtree(tmp / "standin", ignore_errors=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    rate = stored / elapsed
    base = tree.ticks / base_s
    print(f"{'':34} {'ticks':>10} {'seconds':>8} {'kticks/s':>9} {'vs decode':>9}")
    print(f"{'pipeline, request → committed':34} {stored:>10,} {elapsed:>8.2f} "
          f"{rate / 1e3:>9.1f} {rate / base:>8.3f}x")  # fmt: skip
    print(f"{'decode_bi5_ticks in-process (1 core)':34} {tree.ticks:>10,} {base_s:>8.2f} "
          f"{base / 1e3:>9.1f} {1:>8.3f}x")  # fmt: skip
    copy_rate = stored / copy_s
    print(f"{'psql binary COPY into ticks':34} {stored:>10,} {copy_s:>8.2f} "
          f"{copy_rate / 1e3:>9.1f} {copy_rate / base:>8.3f}x")  # fmt: skip
    print(f"\npipeline / raw COPY into the same table = {rate / copy_rate:.2f} (target ≥ 0.50)")
    check = "ok" if stored == ledger_rows else "MISMATCH"
    print(f"\n{units} units in the ledger; ticks stored {stored:,}, ledger rows {ledger_rows:,} "
          f"({check}); decoded {tree.ticks:,} (the validator dropped "
          f"{tree.ticks - stored:,})\n")  # fmt: skip
    print(f"{'stage':18} {'batches':>8} {'busy s':>8} {'busy % of wall':>15}")
    for stage, (batches, busy) in sorted(stages.items(), key=lambda kv: -kv[1][1]):
        print(f"{stage:18} {batches:>8.0f} {busy:>8.2f} {100 * busy / elapsed:>14.0f}%")


if __name__ == "__main__":
    main()
