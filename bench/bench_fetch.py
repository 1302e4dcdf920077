"""Download throughput of the fetcher against the stand-in server, beside the ideal.

Run: ``uv run python bench/bench_fetch.py [--units N] [--hours H] [--in-process]``. Starts the
stand-in Dukascopy server in its own process (``--in-process``: on the benchmark's event loop,
which then pays the server's CPU too) on 127.0.0.1 over a temporary tree of H self-made
``.bi5`` hours (LZMA-alone, 20-byte big-endian records; ``--ticks`` each), then for
server latency 0 ms and 50 ms and download concurrency 1, 4 and 16 runs the real
:class:`~tickpipe_fetcher.downloader.Downloader` with
:class:`~tickpipe_fetcher.http.AiohttpTransport`
(the rate limiter off, the breaker on but idle: no faults) and prints units per second with the
ideal ``concurrency / latency`` beside it. At 0 ms there is no latency bound: the figure is what
one fetcher process can do against a local server on the same machine.

``--mode budget``: the production politeness (``TICKPIPE_FETCH_RATE_PER_HOST`` 10 req/s, burst
10, default concurrency), 50 ms ± 25 ms latency: units/s and the share of the rate budget used,
once in rounds (``Downloader.process`` of ``fetch_concurrency`` units at a time, as the fetcher
checkpointed before the pipeline) and once through :class:`~tickpipe_fetcher.pipeline.UnitPipeline`
(as the service runs now).

``--mode faults``: a month of hourly units (``--units 720``) at 50 req/s, clean and with 30 % of
answers faulted by the stand-in (6 % each of 500, 503, 429 with ``Retry-After: 1``, an HTML page
with status 200, and 8 % of the rest dropped mid-body: connection resets), through the pipeline
with delayed retries after 2 s (re-queued units are fed back in, as the topic would): seconds
of each run, their ratio, delayed retries and units left failed. ``--rounds`` runs the same in
rounds; with ``PYTHONPATH`` pointing at an older checkout's sources it measures the old code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import lzma
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tickpipe_dev.standin.server import Faults, start_standin
from tickpipe_fetcher.downloader import Downloader
from tickpipe_fetcher.http import AiohttpTransport
from tickpipe_fetcher.sources import DukascopyBi5
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.records import OutRecord
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.fetch_units import FetchUnit

START = datetime(2019, 2, 4, tzinfo=UTC)
TICK = struct.Struct(">IIIff")


class Rec:
    """The minimum of an InRecord the downloader reads."""

    def __init__(self, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> None:
        self.value, self.key, self.topic = value, b"k", "fetch-units"
        self.partition, self.offset, self.headers = 0, 0, headers or []


def make_tree(root: Path, hours: int, ticks: int) -> int:
    """``hours`` .bi5 files under ``root``; returns their total size in bytes."""
    rng = random.Random(1)
    total = 0
    for i in range(hours):
        t = START + timedelta(hours=i)
        ms = sorted(rng.sample(range(3_600_000), ticks))
        bid = 113_000
        raw = bytearray()
        for m in ms:
            bid += rng.randint(-3, 3)
            raw += TICK.pack(m, bid + rng.randint(0, 5), bid, 1.0, 0.5)
        payload = lzma.compress(bytes(raw), format=lzma.FORMAT_ALONE)
        path = root / f"bi5/EURUSD/{t.year}/{t.month - 1:02d}/{t.day:02d}/{t.hour:02d}h_ticks.bi5"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        total += len(payload)
    return total


def records(n: int, hours: int) -> list[Rec]:
    out = []
    for i in range(n):
        start = int((START + timedelta(hours=i % hours)).timestamp() * 1000)
        unit = FetchUnit(
            "bench", Unit("dukascopy-bi5", "EURUSD", "ticks", start, start + 3_600_000), "EURUSD", 5
        )
        out.append(Rec(unit.to_json()))
    return out


class External:
    """The stand-in in a child process, driven through ``/_control``."""

    def __init__(self, root: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.datafeed_url = f"{self.url}/datafeed"
        cmd = [sys.executable, "-m", "tickpipe_dev.standin.main", "--root", str(root),
               "--port", str(self.port)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.proc.kill()
        sys.exit("the stand-in did not start")

    async def set_latency(self, ms: float) -> None:
        body = json.dumps({"latency_ms": float(ms)}).encode()
        req = urllib.request.Request(f"{self.url}/_control", method="POST", data=body)
        await asyncio.to_thread(lambda: urllib.request.urlopen(req, timeout=5).close())

    async def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class InProcess:
    def __init__(self, root: Path) -> None:
        self.root = root

    async def start(self) -> InProcess:
        self.srv = await start_standin(self.root)
        self.url, self.datafeed_url = self.srv.url, self.srv.datafeed_url
        return self

    async def set_latency(self, ms: float) -> None:
        self.srv.set_faults(Faults(latency_ms=ms))

    async def stop(self) -> None:
        await self.srv.stop()


async def measure(datafeed_url: str, concurrency: int, n: int, hours: int) -> float:
    """Units per second of one downloader batch of ``n`` units."""
    settings = Settings(
        dukascopy_bi5_url=datafeed_url,
        fetch_concurrency=concurrency,
        fetch_concurrency_per_host=concurrency,  # one host: it may use every slot
        fetch_rate_per_host=0,  # rate limiting off: measure the fetcher, not the politeness
    )
    failed: list[Any] = []

    def failure(record: Any, error: BaseException, attempts: int) -> OutRecord:
        failed.append(error)
        return OutRecord("failures", b"k", b"")

    transport = AiohttpTransport(settings)
    d = Downloader(settings, {"dukascopy-bi5": DukascopyBi5(datafeed_url)}, transport, failure)
    try:
        await d.process(records(min(concurrency, n), hours))  # warm up: connections
        t = time.perf_counter()
        outs = await d.process(records(n, hours))
        elapsed = time.perf_counter() - t
    finally:
        await transport.close()
    if failed or len(outs) != n:
        sys.exit(f"bench run failed: {failed[:3]}")
    return n / elapsed


FAULTS_30 = {"p_500": 0.06, "p_503": 0.06, "p_429": 0.06, "p_html": 0.06,
             "p_truncate": 0.08, "truncate_mode": "abort", "retry_after_s": 1.0}  # fmt: skip
done_at: list[float] = []  # seconds into the run at which each output was ready
CLEAN = {"p_500": 0.0, "p_503": 0.0, "p_429": 0.0, "p_html": 0.0, "p_truncate": 0.0}


async def control(url: str, changes: dict[str, Any]) -> None:
    req = urllib.request.Request(
        f"{url}/_control", method="POST", data=json.dumps(changes).encode()
    )
    await asyncio.to_thread(lambda: urllib.request.urlopen(req, timeout=5).close())


async def stream(datafeed_url: str, n: int, hours: int, rounds: bool,
                 **settings: Any) -> tuple[float, int, int]:  # fmt: skip
    """Download ``n`` units; returns (seconds, delayed retries, units failed)."""
    known = Settings.model_fields
    s = Settings(**{k: v for k, v in settings.items() if k in known})
    failed: list[BaseException] = []

    def failure(record: Any, error: BaseException, attempts: int) -> OutRecord:
        failed.append(error)
        return OutRecord("failures", b"k", b"")

    transport = AiohttpTransport(s)
    d = Downloader(s, {"dukascopy-bi5": DukascopyBi5(datafeed_url)}, transport, failure)
    requeued = 0
    done_at.clear()
    todo: list[Any] = records(n, hours)
    t = time.perf_counter()
    try:
        if rounds:
            while todo:
                batch, todo = todo[: s.fetch_concurrency], todo[s.fetch_concurrency :]
                for out in await d.process(batch):
                    if out.topic.endswith("fetch-units"):
                        requeued += 1
                        todo.append(Rec(out.value, list(out.headers)))
        else:
            from tickpipe_fetcher.pipeline import UnitPipeline

            pipeline: UnitPipeline

            async def emit(out: OutRecord) -> None:
                nonlocal requeued
                done_at.append(time.perf_counter() - t)
                if out.topic.endswith("fetch-units"):
                    requeued += 1
                    await pipeline.submit(Rec(out.value, list(out.headers)))

            pipeline = UnitPipeline(d.download, emit, s.fetch_pipeline_units)
            for r in todo:
                await pipeline.submit(r)
            await pipeline.drain()
    finally:
        await transport.close()
    return time.perf_counter() - t, requeued, len(failed)


async def budget(srv: External, hours: int, n: int) -> None:
    await control(srv.url, {"latency_ms": 50.0, "jitter_ms": 50.0, **CLEAN})
    d = Settings()
    rate = d.fetch_rate_per_host
    print(f"rate budget {rate:g} req/s per host (burst {d.fetch_rate_burst:g}), "
          f"concurrency {d.fetch_concurrency}, latency 50-100 ms, {n} units\n")  # fmt: skip
    print(f"{'mode':>10} {'seconds':>8} {'units/s':>8} {'of budget':>9}")
    for rounds in (True, False):
        secs, _, failed = await stream(srv.datafeed_url, n, hours, rounds)
        if failed:
            sys.exit(f"{failed} units failed")
        mode = "rounds" if rounds else "pipeline"
        print(f"{mode:>10} {secs:8.2f} {n / secs:8.2f} {n / secs / rate:8.0%}")


async def faults(srv: External, hours: int, n: int, rounds: bool, **extra: Any) -> None:
    # 4 slots for the host: at 20 ms (plus this machine's CPU) 2 slots would cap the host below
    # 50 req/s once retries add requests, and the bench is about the rate budget.
    settings = {"fetch_rate_per_host": 50.0, "fetch_delayed_retry_s": 2.0, "fetch_concurrency": 8,
                "fetch_concurrency_per_host": 4, **extra}  # fmt: skip
    print(f"{n} hourly units at 50 req/s, latency 20 ms, 4 slots per host, "
          f"{'rounds' if rounds else 'pipeline'}\n")  # fmt: skip
    print(f"{'answers':>12} {'seconds':>8} {'vs clean':>8} {'delayed':>8} {'failed':>7}")
    clean = 0.0
    for name, f in (("clean", CLEAN), ("30% faulted", FAULTS_30)):
        await control(srv.url, {"latency_ms": 20.0, "jitter_ms": 0.0, "seed": 7, **f})
        secs, delayed, failed = await stream(srv.datafeed_url, n, hours, rounds, **settings)
        clean = clean or secs
        q = sorted(done_at)
        tail = f"  (90 % of outputs by {q[int(len(q) * 0.9)]:.1f} s)" if q else ""
        print(f"{name:>12} {secs:8.2f} {secs / clean:7.2f}x {delayed:8} {failed:7}{tail}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("throughput", "budget", "faults"),
                        default="throughput")  # fmt: skip
    parser.add_argument("--rounds", action="store_true", help="faults mode: in rounds")
    parser.add_argument("--settings", default="", help="faults mode: JSON of extra Settings")
    parser.add_argument("--units", type=int, default=0, help="units per run (default: auto)")
    parser.add_argument("--hours", type=int, default=48, help="distinct hour files")
    parser.add_argument("--ticks", type=int, default=3000, help="ticks per hour file")
    parser.add_argument("--in-process", action="store_true", help="stand-in on this event loop")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        size = make_tree(Path(tmp), args.hours, args.ticks)
        srv: External | InProcess
        srv = await InProcess(Path(tmp)).start() if args.in_process else External(Path(tmp))
        if args.mode != "throughput":
            assert isinstance(srv, External), "--mode budget/faults run the stand-in apart"
            try:
                if args.mode == "budget":
                    await budget(srv, args.hours, args.units or 80)
                else:
                    extra = json.loads(args.settings) if args.settings else {}
                    await faults(srv, args.hours, args.units or 720, args.rounds, **extra)
            finally:
                await srv.stop()
            return
        where = "in this process" if args.in_process else "in its own process"
        print(f"stand-in {where} at {srv.url}: {args.hours} hour files, "
              f"{size / args.hours / 1024:.0f} KiB each; rate limiting off\n")  # fmt: skip
        print(f"{'latency':>8} {'concurrency':>11} {'units':>6} {'units/s':>9} {'ideal':>9} "
              f"{'of ideal':>8}")  # fmt: skip
        try:
            for latency_ms in (0, 50):
                await srv.set_latency(latency_ms)
                for concurrency in (1, 4, 16):
                    ideal = concurrency / (latency_ms / 1000) if latency_ms else None
                    n = args.units or (400 if ideal is None else max(20, int(ideal * 2)))
                    rate = await measure(srv.datafeed_url, concurrency, n, args.hours)
                    ideal_s = f"{ideal:9.1f}" if ideal else f"{'—':>9}"
                    share = f"{rate / ideal:7.0%}" if ideal else f"{'':>8}"
                    print(f"{latency_ms:>6}ms {concurrency:>11} {n:>6} {rate:>9.1f} {ideal_s} "
                          f"{share}")  # fmt: skip
        finally:
            await srv.stop()


if __name__ == "__main__":
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    asyncio.run(main())
