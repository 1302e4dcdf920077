"""The downloader over real HTTP against an in-process stand-in server with injected faults.

No Kafka, no database: the :class:`~tickpipe_fetcher.downloader.Downloader` is driven directly
with :class:`~tickpipe_fetcher.http.AiohttpTransport` against the stand-in on 127.0.0.1 (an
ephemeral port) serving a tree of self-made ``.bi5`` hours. It shows that

(a) under ~30 % mixed faults (500, 503, 429 + Retry-After, HTML pages, bodies cut mid-stream)
    every unit ends as a raw payload or an explicit failure, and with enough attempts all succeed
    with the bodies byte-identical to the files;
(b) the request rate measured at the server never exceeds the configured total (plus burst)
    over any 1-s window, also with two replicas sharing it;
(c) the circuit breaker opens when the host answers 503 to everything (the metric shows it),
    and once the faults are cleared it half-opens, closes, and the units complete.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from support.synthetic import bi5_hour
from tickpipe_dev.standin import server as standin
from tickpipe_fetcher.downloader import Downloader
from tickpipe_fetcher.http import AiohttpTransport
from tickpipe_fetcher.sources import DukascopyBi5
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.records import OutRecord
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.fetch_units import FetchUnit
from tickpipe_shared.wire.raw import RawPayloadMeta

START = datetime(2019, 2, 4, 0, tzinfo=UTC)
HOURS_WITH_DATA = 12  # 2019-02-04 00:00 … 11:00; later hours are missing → 0-byte answers


@dataclass
class Rec:
    value: bytes | None
    key: bytes | None = b"k"
    topic: str = "tickpipe.fetch-units"
    partition: int = 0
    offset: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class Failed:
    record: Any
    error: BaseException
    attempts: int


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, bytes]]:
    """A stand-in root with 12 EURUSD hours; returns it and each hour's file bytes."""
    root = tmp_path_factory.mktemp("standin-resilience")
    files: dict[int, bytes] = {}
    for i in range(HOURS_WITH_DATA):
        hour = START + timedelta(hours=i)
        payload, _ = bi5_hour(hour, scale=5, seed=100 + i, n=400 + 50 * i, first_bid=113_000)
        rel = f"{hour.year}/{hour.month - 1:02d}/{hour.day:02d}/{hour.hour:02d}h_ticks.bi5"
        path = root / "bi5/EURUSD" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        files[i] = payload
    return root, files


@pytest.fixture
async def server(tree: tuple[Path, dict[int, bytes]]) -> AsyncIterator[standin.StandinServer]:
    srv = await standin.start_standin(tree[0])
    try:
        yield srv
    finally:
        await srv.stop()


def unit_records(n: int, offset: int = 0) -> list[Rec]:
    out = []
    for i in range(offset, offset + n):
        start = int((START + timedelta(hours=i)).timestamp() * 1000)
        unit = FetchUnit(
            "req-res",
            Unit("dukascopy-bi5", "EURUSD", "ticks", start, start + 3_600_000),
            "EURUSD",
            5,
        )
        out.append(Rec(unit.to_json(), key=unit.unit.key.encode()))
    return out


def make(srv: standin.StandinServer, **settings: Any) -> tuple[Downloader, list[Failed]]:
    failed: list[Failed] = []

    def failure(record: Any, error: BaseException, attempts: int) -> OutRecord:
        failed.append(Failed(record, error, attempts))
        return OutRecord("tickpipe.failures", record.key, str(error).encode())

    s = Settings(**{
        "dukascopy_bi5_url": srv.datafeed_url,
        "fetch_concurrency": 8,
        # One host here: it may use every slot, as before slots were per host.
        "fetch_concurrency_per_host": settings.get("fetch_concurrency", 8),
        "fetch_backoff_base_s": 0.01,
        "fetch_backoff_max_s": 0.1,
        "fetch_connect_timeout_s": 2.0,
        "fetch_read_timeout_s": 2.0,
        "fetch_total_timeout_s": 5.0,
        "fetch_delayed_retries": 0,  # about one round of attempts (delayed retries: test_pipeline)
        **settings,
    })  # fmt: skip
    d = Downloader(s, {"dukascopy-bi5": DukascopyBi5(srv.datafeed_url)}, AiohttpTransport(s),
                   failure)  # fmt: skip
    return d, failed


async def run(d: Downloader, records: Sequence[Rec]) -> list[OutRecord]:
    try:
        return await d.process(records)
    finally:
        assert isinstance(d.transport, AiohttpTransport)
        await d.transport.close()


async def control(srv: standin.StandinServer, **changes: Any) -> None:
    """POST ``/_control`` (from a thread: the server runs on this event loop)."""
    await asyncio.to_thread(_control, srv, changes)


async def stats(srv: standin.StandinServer) -> dict[str, Any]:
    """GET ``/_stats``: the request log as the server saw it."""
    return await asyncio.to_thread(_stats, srv)


def _control(srv: standin.StandinServer, changes: dict[str, Any]) -> None:
    req = urllib.request.Request(
        f"{srv.url}/_control", data=json.dumps(changes).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def _stats(srv: standin.StandinServer) -> dict[str, Any]:
    with urllib.request.urlopen(f"{srv.url}/_stats", timeout=5) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


def host(srv: standin.StandinServer) -> str:
    return f"{srv.host}:{srv.port}"


def max_in_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    return max(sum(1 for u in times if s <= u < s + window) for s in times)


FAULTS_30 = {"p_500": 0.06, "p_503": 0.06, "p_429": 0.06, "retry_after_s": 0.05,
             "p_html": 0.06, "p_truncate": 0.07, "truncate_mode": "abort", "seed": 7}  # fmt: skip


def check_payloads(outs: Sequence[OutRecord], files: dict[int, bytes], n: int) -> None:
    for i, out in enumerate(outs):
        assert out.topic == "tickpipe.raw-payloads", out.value
        expected = files.get(i, b"")  # missing hours are 0-byte (closed-market) answers
        assert out.value == expected, f"hour {i}: body differs from the file"
        assert RawPayloadMeta.from_headers(out.headers).unit.start_ms == int(
            (START + timedelta(hours=i)).timestamp() * 1000
        )
    assert len(outs) == n


async def test_a_faults_every_unit_ends_stored_or_failed(
    server: standin.StandinServer, tree: tuple[Path, dict[int, bytes]]
) -> None:
    # Few attempts and heavier faults (so that some unit surely fails: P(none) < 0.1 %):
    # every unit ends as a payload or as a failure with its attempt count and last error.
    await control(server, **{k: 2 * v if k.startswith("p_") else v for k, v in FAULTS_30.items()})
    d, failed = make(server, fetch_attempts=2, fetch_rate_per_host=0, fetch_breaker_cooldown_s=0.2)
    records = unit_records(24)
    outs = await run(d, records)
    assert len(outs) == 24
    by_key = {f.record.key: f for f in failed}
    for rec, out in zip(records, outs, strict=True):
        if out.topic == "tickpipe.failures":
            f = by_key[rec.key]
            assert f.attempts == 2
            assert "gave up after 2 attempts; last error: " in str(f.error)
        else:
            assert out.topic == "tickpipe.raw-payloads"
    assert failed, "with 30 % faults and 2 attempts some unit should have failed"
    observed = (await stats(server))["by_status"]
    assert {"500", "503", "429"} <= set(observed), observed

    # Enough attempts: every unit succeeds, byte-identical to the files.
    await control(server, **FAULTS_30, reset_stats=True)
    d, failed = make(server, fetch_attempts=15, fetch_rate_per_host=0, fetch_breaker_cooldown_s=0.2)
    outs = await run(d, unit_records(24))
    assert failed == []
    check_payloads(outs, tree[1], 24)
    retried = [RawPayloadMeta.from_headers(o.headers).attempts for o in outs]
    assert max(retried) > 1  # the faults were really hit


async def test_b_rate_never_exceeded_at_the_server(
    server: standin.StandinServer, tree: tuple[Path, dict[int, bytes]]
) -> None:
    rate, burst = 20.0, 4.0
    # Two replicas, each configured with the fleet total and the replica count.
    settings = {"fetch_rate_per_host": rate, "fetch_rate_burst": burst, "fetch_replicas": 2,
                "fetch_concurrency": 16}  # fmt: skip
    a, fa = make(server, **settings)
    b, fb = make(server, **settings)
    outs_a, outs_b = await asyncio.gather(run(a, unit_records(35)), run(b, unit_records(35, 35)))
    assert fa == fb == []
    check_payloads([*outs_a, *outs_b], tree[1], 70)
    times = [r["t"] for r in (await stats(server))["requests"]]
    assert len(times) == 70
    worst = max_in_window(times)
    assert worst <= rate + burst, f"{worst} requests within one second"
    # And it is not trivially slow: the steady state runs at the rate (±15 %).
    span = max(times) - min(times)
    assert (70 - burst) / rate * 0.85 <= span <= (70 - burst) / rate * 1.3


async def test_c_breaker_opens_and_recovers(
    server: standin.StandinServer, tree: tuple[Path, dict[int, bytes]]
) -> None:
    await control(server, p_503=1.0)
    d, failed = make(
        server,
        fetch_attempts=20,
        fetch_rate_per_host=0,
        fetch_breaker_failures=3,
        fetch_breaker_cooldown_s=0.4,
        fetch_breaker_max_wait_s=30.0,
    )
    labels = {"host": host(server)}
    task = asyncio.create_task(run(d, unit_records(6)))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if REGISTRY.get_sample_value("tickpipe_fetcher_breaker_state", labels) == 2.0:
            break
    assert REGISTRY.get_sample_value("tickpipe_fetcher_breaker_state", labels) == 2.0
    await asyncio.sleep(1.0)  # a few cool-downs: half-open probes fail, it re-opens
    open_stats = await stats(server)
    assert set(open_stats["by_status"]) == {"503"}
    # While open only probes go: ≤ 1 per cool-down after the first burst of failures.
    assert open_stats["total"] <= 6 + 1.0 / 0.4 + 2
    await control(server, reset=True)
    outs = await asyncio.wait_for(task, 15)
    assert failed == []
    check_payloads(outs, tree[1], 6)
    breaker = d.breakers.for_host(host(server))
    assert breaker.opened >= 2
    assert REGISTRY.get_sample_value("tickpipe_fetcher_breaker_state", labels) == 0.0
    for state in ("open", "half_open", "closed"):
        count = REGISTRY.get_sample_value(
            "tickpipe_fetcher_breaker_transitions_total", {**labels, "state": state}
        )
        assert count is not None and count >= 1, state
    # Waiting on the breaker spent no attempts: 20 allowed, a handful used.
    assert max(RawPayloadMeta.from_headers(o.headers).attempts for o in outs) < 10
