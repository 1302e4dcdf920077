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

    def __init__(self, value: bytes) -> None:
        self.value, self.key, self.topic = value, b"k", "fetch-units"
        self.partition, self.offset, self.headers = 0, 0, []


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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=0, help="units per run (default: auto)")
    parser.add_argument("--hours", type=int, default=48, help="distinct hour files")
    parser.add_argument("--ticks", type=int, default=3000, help="ticks per hour file")
    parser.add_argument("--in-process", action="store_true", help="stand-in on this event loop")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        size = make_tree(Path(tmp), args.hours, args.ticks)
        srv: External | InProcess
        srv = await InProcess(Path(tmp)).start() if args.in_process else External(Path(tmp))
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

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    asyncio.run(main())
