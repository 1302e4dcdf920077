"""Scale run: N synthetic ticks through the running local stack, every row verified, memory and
throughput sampled so flatness shows at a glance.

Run with the whole stack up (``uv run tickpipe-stack up``; the stack turns the ``synthetic``
source on)::

    uv run python bench/bench_scale.py                       # 300 M ticks (hours; see README)
    uv run python bench/bench_scale.py --ticks 3e6           # smoke run, ~1 min
    uv run python bench/bench_scale.py --ticks 3e6 --replicas writer=2   # 1 vs 2 writers

What it does:

1. Plans the hours of ``--instrument`` (FX week) from ``--from`` that hold ``--ticks`` synthetic
   ticks at the stack's ``TICKPIPE_SYNTHETIC_*`` rate (the bench reads the same variables: set
   them alike for both), deletes earlier rows of that instrument, and measures the baseline: the
   same rows (up to ``--baseline-ticks``), encoded as the writer's binary COPY, loaded by
   ``psql \\copy … (FORMAT binary)`` into the ``ticks`` hypertable of a scratch database.
2. Publishes one request (``tickpipe request`` would publish the same) and waits for its
   ``completed`` event on ``request-events``; meanwhile samples every ``--interval`` s (5):
   committed rows/s (ledger), RSS and CPU seconds of every process of the stack (replicas and
   PostgreSQL backends included), consumer lag per group, Kafka log size, database size.
3. Verifies the database: row count and per-hour checksum of every unit against the generator
   (:mod:`support.scale`), closed hours empty.
4. Prints totals, throughput of the first and last 10 % of the rows, peak RSS per service (first
   vs last 10 %), ticks/s against the COPY baseline, CPU seconds per million ticks per stage;
   writes ``samples.csv`` and ``scale.png`` under ``--out``.

``--replicas STAGE=N`` runs the same request twice — with one replica of that stage, then N
(``tickpipe-stack up --replicas``) — on two instruments, and prints both figures and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from tickpipe_cli.progress import PlainDisplay
from tickpipe_cli.requests import publish, wait
from tickpipe_dev.stack import api as stack
from tickpipe_dev.stack import replicas
from tickpipe_dev.stack.paths import StackPaths
from tickpipe_dev.stack.processes import live_pid
from tickpipe_fetcher.main import synthetic_params
from tickpipe_shared.config import Settings
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.kafka.topics import (
    DECODED_BATCHES,
    FETCH_REQUESTS,
    FETCH_UNITS,
    RAW_PAYLOADS,
    VALIDATED_BATCHES,
)
from tickpipe_shared.synthetic.ticks import HOUR_MS, generate_ticks
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import TickBatch
from tickpipe_shared.wire.requests import FetchRequest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_writer import copy_bytes, libpq_env, psql_binary
from common import REPO
from support.batches import unit_meta
from support.scale import SyntheticPlan, plan_ticks, verify

#: Consumer group (service name) → the topic it consumes.
GROUPS = {
    "fetcher-planner": FETCH_REQUESTS,
    "fetcher": FETCH_UNITS,
    "decoder": RAW_PAYLOADS,
    "validator": DECODED_BATCHES,
    "writer": VALIDATED_BATCHES,
}
SERVICES = ("fetcher", "decoder", "validator", "writer", "tracker", "api")
STAGES = (*SERVICES, "postgres", "kafka")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
RSS_LIMIT_MB = 300
#: Disk per tick measured in the 3 M smoke: Kafka (raw .bi5 ~8 B, decoded and validated batches
#: ~42 B each; decoded/validated are kept 3 days) and the database before compression (float8
#: prices, two indexes, aggregates).
KAFKA_BYTES_PER_TICK = 90
DB_BYTES_PER_TICK = 200


# --- processes ---------------------------------------------------------------------------------


def stack_pids(paths: StackPaths) -> dict[str, list[int]]:
    """Stage → pids of the stack: each service's replicas, PostgreSQL with its backends,
    Kafka."""
    found: dict[str, list[int]] = {s: [] for s in STAGES}
    for pid_file in paths.run_dir.glob("*.pid"):
        name = pid_file.stem
        base = replicas.split_name(name)
        stage = base[0] if base else name
        pid = live_pid(pid_file)
        if stage in found and pid is not None:
            found[stage].append(pid)
    found["postgres"] += _children(found["postgres"])
    return found


def _children(parents: Sequence[int]) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) in parents:
                kids.append(int(entry))
    return kids


def proc_figures(pid: int) -> tuple[float, float]:
    """RSS (MB) and CPU seconds (user + system) of ``pid``; zeros when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError):
        return 0.0, 0.0
    return rss_pages * PAGE / 1e6, (int(stat[11]) + int(stat[12])) / CLK_TCK


def dir_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


# --- sampling ----------------------------------------------------------------------------------


@dataclass
class Sample:
    t: float  # seconds since publish
    rows: int  # committed rows of the run
    rss_mb: dict[str, float]  # stage → peak RSS of one process of it (replicas: the largest)
    cpu_s: dict[str, float]  # stage → CPU seconds over all its processes
    lag: dict[str, int]  # consumer group → records behind
    kafka_mb: float
    db_mb: float


@dataclass
class Sampler:
    settings: Settings
    paths: StackPaths
    conn: asyncpg.Connection
    plan: SyntheticPlan
    interval: float
    samples: list[Sample] = field(default_factory=list)
    cpu_start: dict[int, float] = field(default_factory=dict)

    async def take(self, t0: float, admin: AIOKafkaAdminClient, ends: AIOKafkaConsumer) -> None:
        pids = stack_pids(self.paths)
        rss: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for stage, group in pids.items():
            figures = [(pid, *proc_figures(pid)) for pid in group]
            rss[stage] = (
                max((r for _, r, _ in figures), default=0.0)
                if stage != "postgres"
                else sum(r for _, r, _ in figures)
            )
            cpu[stage] = sum(c - self.cpu_start.setdefault(pid, c) for pid, _, c in figures)
        rows = await self.conn.fetchval(
            "SELECT coalesce(sum(rows), 0) FROM ingest_log WHERE instrument = $1 "
            "AND kind = 'ticks' AND state = 'stored' AND unit_start >= $2 AND unit_start < $3",
            self.plan.instrument,
            self.plan.from_dt,
            self.plan.to_dt,
        )
        db = await self.conn.fetchval("SELECT pg_database_size(current_database())")
        lag = await consumer_lag(self.settings, admin, ends)
        self.samples.append(
            Sample(
                time.perf_counter() - t0,
                int(rows),
                rss,
                cpu,
                lag,
                dir_size(self.paths.kafka_data) / 1e6,
                db / 1e6,
            )
        )

    async def run(self, t0: float, stop: asyncio.Event) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        ends = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap)
        await admin.start()
        await ends.start()
        try:
            while True:
                await self.take(t0, admin, ends)
                try:
                    await asyncio.wait_for(stop.wait(), self.interval)
                    await self.take(t0, admin, ends)
                    return
                except TimeoutError:
                    pass
        finally:
            await ends.stop()
            await admin.close()


async def consumer_lag(
    settings: Settings, admin: AIOKafkaAdminClient, ends: AIOKafkaConsumer
) -> dict[str, int]:
    """Group → records between its committed offsets and the ends of its topic."""
    lag: dict[str, int] = {}
    for service, topic in GROUPS.items():
        name = settings.topic(topic)
        # Topics are created with TICKPIPE_TOPIC_PARTITIONS partitions (ensure_topics).
        parts = [TopicPartition(name, p) for p in range(settings.topic_partitions)]
        end = await ends.end_offsets(parts)
        committed = await admin.list_consumer_group_offsets(settings.group(service))
        lag[service] = sum(
            max(0, end[tp] - (committed[tp].offset if tp in committed else 0)) for tp in parts
        )
    return lag


# --- the run -----------------------------------------------------------------------------------


@dataclass
class RunResult:
    label: str
    plan: SyntheticPlan
    elapsed: float
    samples: list[Sample]
    verified: bool
    verify_s: float
    mismatches: list[str]
    completed: bool

    @property
    def rate(self) -> float:
        return self.plan.ticks / self.elapsed


async def clear(conn: asyncpg.Connection, instrument: str) -> None:
    """Forget earlier runs of ``instrument`` (rows and ledger), so counts start at 0."""
    await conn.execute("DELETE FROM ticks WHERE instrument = $1", instrument)
    await conn.execute("DELETE FROM ingest_log WHERE instrument = $1", instrument)


async def one_run(
    settings: Settings, plan: SyntheticPlan, label: str, args: argparse.Namespace
) -> RunResult:
    paths = StackPaths.discover()
    conn = await asyncpg.connect(settings.database_url.get_secret_value(), command_timeout=7200)
    try:
        await migrate(conn)
        await clear(conn, plan.instrument)
        request = FetchRequest(
            source="synthetic",
            instrument=plan.instrument,
            from_=plan.from_dt,
            to=plan.to_dt,
            request_id=f"bench-scale-{uuid.uuid4().hex[:12]}",
        )
        sampler = Sampler(
            settings,
            paths,
            conn=await asyncpg.connect(settings.database_url.get_secret_value()),
            plan=plan,
            interval=args.interval,
        )
        stop = asyncio.Event()
        t0 = time.perf_counter()
        sampling = asyncio.create_task(sampler.run(t0, stop))
        await publish(settings, request)
        result = await wait(settings, request, args.timeout, PlainDisplay(Console(quiet=True)))
        elapsed = time.perf_counter() - t0
        stop.set()
        await sampling
        await sampler.conn.close()
        t = time.perf_counter()
        check = await verify(conn, plan)
        return RunResult(
            label,
            plan,
            elapsed,
            sampler.samples,
            check.ok,
            time.perf_counter() - t,
            check.mismatches,
            result.finished,
        )
    finally:
        await conn.close()


async def copy_baseline(settings: Settings, plan: SyntheticPlan, max_ticks: int) -> float:
    """Rows/s of ``psql \\copy (FORMAT binary)`` of the plan's first rows (up to ``max_ticks``)
    into the ``ticks`` hypertable of a scratch database (migrated as the stack's)."""
    batches: list[TickBatch] = []
    n = 0
    for start, is_open, count in zip(
        plan.starts.tolist(), plan.open_.tolist(), plan.counts.tolist(), strict=True
    ):
        if not count:
            continue
        unit = Unit("synthetic", plan.instrument, "ticks", start, start + HOUR_MS)
        ticks = generate_ticks(
            plan.instrument, start, start + HOUR_MS, market_open=is_open, params=plan.params
        )
        batches.append(TickBatch(unit_meta(unit, len(ticks), plan.scale), ticks))
        n += len(ticks)
        if n >= max_ticks:
            break
    admin_dsn = settings.database_url.get_secret_value()
    name = f"tp_bench_scale_{uuid.uuid4().hex[:8]}"
    dsn = admin_dsn.rsplit("/", 1)[0] + "/" + name
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await asyncpg.connect(dsn)
        await migrate(conn)
        await conn.close()
        with tempfile.TemporaryDirectory(prefix="tp_bench_scale_") as tmp:
            copy_file = Path(tmp) / "ticks.copy"
            copy_file.write_bytes(copy_bytes(batches))
            from tickpipe_writer.copy_binary import TICK_COPY_COLUMNS

            cmd = [
                psql_binary(),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                f"\\copy ticks({', '.join(TICK_COPY_COLUMNS)}) FROM '{copy_file}' "
                "WITH (FORMAT binary)",
            ]
            t = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(*cmd, env={**os.environ, **libpq_env(dsn)})
            if await proc.wait() != 0:
                raise SystemExit(f"psql \\copy failed with status {proc.returncode}")
            return n / (time.perf_counter() - t)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# --- figures -----------------------------------------------------------------------------------


def _time_at(samples: Sequence[Sample], rows: float) -> float:
    """Interpolated time at which ``rows`` rows were committed."""
    prev = samples[0]
    for s in samples:
        if s.rows >= rows:
            if s.rows == prev.rows:
                return s.t
            return prev.t + (s.t - prev.t) * (rows - prev.rows) / (s.rows - prev.rows)
        prev = s
    return samples[-1].t


def tenths(result: RunResult) -> tuple[float, float]:
    """Rows/s over the first and the last 10 % of the rows."""
    s, total = result.samples, result.plan.ticks
    first = 0.1 * total / max(_time_at(s, 0.1 * total) - _time_at(s, 1), 1e-9)
    last = 0.1 * total / max(_time_at(s, total) - _time_at(s, 0.9 * total), 1e-9)
    return first, last


def rss_windows(result: RunResult) -> dict[str, tuple[float, float, float]]:
    """Stage → (max RSS MB in the first 10 % of the time, in the last 10 %, overall)."""
    s = result.samples
    end = s[-1].t
    out = {}
    for stage in STAGES:
        first = [x.rss_mb.get(stage, 0.0) for x in s if x.t <= 0.1 * end] or [0.0]
        last = [x.rss_mb.get(stage, 0.0) for x in s if x.t >= 0.9 * end] or [0.0]
        out[stage] = (max(first), max(last), max(x.rss_mb.get(stage, 0.0) for x in s))
    return out


def write_csv(path: Path, result: RunResult) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "t_s",
                "rows",
                "rows_per_s",
                *(f"rss_mb_{s}" for s in STAGES),
                *(f"cpu_s_{s}" for s in STAGES),
                *(f"lag_{g}" for g in GROUPS),
                "kafka_mb",
                "db_mb",
            ]
        )
        prev = None
        for x in result.samples:
            rate = (x.rows - prev.rows) / (x.t - prev.t) if prev and x.t > prev.t else 0.0
            w.writerow(
                [
                    f"{x.t:.1f}",
                    x.rows,
                    f"{rate:.0f}",
                    *(f"{x.rss_mb.get(s, 0):.1f}" for s in STAGES),
                    *(f"{x.cpu_s.get(s, 0):.2f}" for s in STAGES),
                    *(x.lag.get(g, 0) for g in GROUPS),
                    f"{x.kafka_mb:.1f}",
                    f"{x.db_mb:.1f}",
                ]
            )
            prev = x


def draw(path: Path, result: RunResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result.samples
    t = [x.t for x in s]
    fig, ax = plt.subplots(4, 1, figsize=(10, 12), sharex=True)
    rates = [0.0]
    for a, b in itertools.pairwise(s):
        rates.append((b.rows - a.rows) / (b.t - a.t) / 1e3 if b.t > a.t else 0.0)
    ax[0].plot(t, rates)
    ax[0].set_ylabel("committed kticks/s")
    for stage in SERVICES:
        ax[1].plot(t, [x.rss_mb.get(stage, 0) for x in s], label=stage)
    ax[1].axhline(RSS_LIMIT_MB, color="red", linestyle="--", linewidth=0.8)
    ax[1].set_ylabel("RSS MB per service (largest replica)")
    ax[1].legend(fontsize=7, ncol=4)
    for group in GROUPS:
        ax[2].plot(t, [x.lag.get(group, 0) for x in s], label=group)
    ax[2].set_ylabel("consumer lag (records)")
    ax[2].legend(fontsize=7, ncol=3)
    ax[3].plot(t, [x.kafka_mb for x in s], label="Kafka log")
    ax[3].plot(t, [x.db_mb for x in s], label="database")
    ax[3].set_ylabel("MB")
    ax[3].set_xlabel("seconds since the request")
    ax[3].legend(fontsize=7)
    fig.suptitle(
        f"{result.label}: {result.plan.ticks:,} synthetic ticks, {result.rate / 1e3:.1f} kticks/s"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report(result: RunResult, copy_rate: float, out: Path) -> None:
    first, last = tenths(result)
    last_s = result.samples[-1]
    print(
        f"\n== {result.label}: {result.plan.ticks:,} ticks in {len(result.plan.starts)} hour "
        f"units ({int((result.plan.counts > 0).sum())} with ticks) "
        f"{result.plan.from_dt:%Y-%m-%d %H:%M} → {result.plan.to_dt:%Y-%m-%d %H:%M}"
    )
    print(
        f"completion event: {'yes' if result.completed else 'NO (timeout)'}; "
        f"request → completed {result.elapsed:.1f} s"
    )
    verdict = "ok" if result.verified else f"FAILED ({len(result.mismatches)} mismatches)"
    print(f"verification (row count + per-unit checksum): {verdict} in {result.verify_s:.1f} s")
    for m in result.mismatches[:5]:
        print(f"  {m}")
    print(f"{'':34} {'kticks/s':>9} {'vs COPY':>8}")
    print(
        f"{'pipeline, request → completed':34} {result.rate / 1e3:>9.1f} "
        f"{result.rate / copy_rate:>7.3f}x"
    )
    baseline = "psql \\copy binary, same rows"
    print(f"{baseline:34} {copy_rate / 1e3:>9.1f} {1:>7.3f}x")
    ratio = last / first if first else float("nan")
    print(
        f"first 10 % of rows: {first / 1e3:.1f} kticks/s; last 10 %: {last / 1e3:.1f} kticks/s "
        f"(last/first {ratio:.2f})"
    )
    print(
        f"\n{'stage':10} {'RSS MB first 10%':>17} {'last 10%':>9} {'peak':>7} "
        f"{'CPU s':>8} {'CPU s / M ticks':>16}"
    )
    windows = rss_windows(result)
    mticks = result.plan.ticks / 1e6
    for stage in STAGES:
        f, la, peak = windows[stage]
        cpu = last_s.cpu_s.get(stage, 0.0)
        flag = "  > 300 MB" if peak > RSS_LIMIT_MB and stage not in ("postgres", "kafka") else ""
        print(
            f"{stage:10} {f:>17.0f} {la:>9.0f} {peak:>7.0f} {cpu:>8.1f} {cpu / mticks:>16.2f}{flag}"
        )
    print("(postgres: the server and its backends summed; kafka: the broker JVM)")
    print(f"Kafka log {last_s.kafka_mb:,.0f} MB, database {last_s.db_mb:,.0f} MB at the end")
    out.mkdir(parents=True, exist_ok=True)
    slug = result.label.replace(" ", "-").replace("=", "")
    write_csv(out / f"samples-{slug}.csv", result)
    draw(out / f"scale-{slug}.png", result)
    print(f"samples: {out / f'samples-{slug}.csv'}; plot: {out / f'scale-{slug}.png'}")


def check_disk(ticks: float, runs: int, force: bool) -> None:
    """Print the disk the run needs against what is free under ``.local``; exit when it does
    not fit (``--force`` goes on anyway)."""
    paths = StackPaths.discover()
    need = ticks * runs * (KAFKA_BYTES_PER_TICK + DB_BYTES_PER_TICK)
    st = os.statvfs(paths.local)
    free = st.f_bavail * st.f_frsize
    print(
        f"disk: the run needs ~{need / 1e9:,.0f} GB (Kafka ~{KAFKA_BYTES_PER_TICK} B/tick, "
        f"database ~{DB_BYTES_PER_TICK} B/tick before compression); {free / 1e9:,.0f} GB free"
    )
    if need > free and not force:
        raise SystemExit(
            "not enough disk: shorten decoded/validated retention (kafka-configs --alter "
            "--add-config retention.ms=3600000), free space, or pass --force"
        )


async def bench(args: argparse.Namespace) -> int:
    settings = Settings()
    params = synthetic_params(settings)
    check_disk(args.ticks, 2 if args.replicas else 1, args.force)
    first = datetime.fromisoformat(args.from_).replace(tzinfo=UTC)
    print(
        f"synthetic: {params.ticks_per_hour:,.0f} ticks/open hour, volatility "
        f"{params.volatility}, spread {params.spread_points} points, seed {params.seed}"
    )
    labels: list[tuple[str, str, str | None]] = [("scale", args.instrument, None)]
    if args.replicas:
        stage, _, n = args.replicas.partition("=")
        labels = [
            (f"{stage}=1", f"{args.instrument}.R1", f"{stage}=1"),
            (f"{stage}={n}", f"{args.instrument}.R{n}", args.replicas),
        ]
    results = []
    copy_rate = 0.0
    for label, instrument, counts in labels:
        plan = plan_ticks(instrument, first, int(args.ticks), params)
        if not copy_rate:
            copy_rate = await copy_baseline(settings, plan, min(plan.ticks, args.baseline_ticks))
        if counts is not None:
            await asyncio.to_thread(stack.up, replica_counts=counts)
        result = await one_run(settings, plan, label, args)
        report(result, copy_rate, Path(args.out))
        results.append(result)
    if args.replicas:
        one, two = results
        print(
            f"\n{one.label}: {one.rate / 1e3:.1f} kticks/s; {two.label}: "
            f"{two.rate / 1e3:.1f} kticks/s; ratio {two.rate / one.rate:.2f}x"
        )
        print(
            f"this machine has {os.cpu_count()} cores shared by every stage, Kafka and "
            "PostgreSQL: on it the ceiling is the machine, not the stage — read the CPU "
            "seconds per million ticks per stage to size a bigger one"
        )
    return 0 if all(r.verified and r.completed for r in results) else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--ticks", type=float, default=300_000_000, help="ticks to request (3e6: smoke)"
    )
    ap.add_argument("--instrument", default="SYNEURUSD", help="synthetic instrument name")
    ap.add_argument("--from", dest="from_", default="2020-01-06", help="first hour (UTC)")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    ap.add_argument("--timeout", type=float, default=6 * 3600, help="seconds to wait")
    ap.add_argument(
        "--baseline-ticks",
        type=int,
        default=3_000_000,
        help="rows of the psql COPY baseline (the run's first rows)",
    )
    ap.add_argument(
        "--replicas",
        metavar="STAGE=N",
        help="compare 1 and N replicas of STAGE (restarts that stage's replicas)",
    )
    ap.add_argument("--force", action="store_true", help="run even if the disk looks too small")
    ap.add_argument("--out", default=str(REPO / ".local" / "bench-scale"), help="CSV/PNG dir")
    args = ap.parse_args()
    if args.replicas:
        replicas.parse_replicas(args.replicas, Settings().topic_partitions)
    sys.exit(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
