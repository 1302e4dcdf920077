"""The tracker (``tickpipe-tracker``, a faust-streaming app) against the real Kafka.

Each test gets its own topic prefix (``trk<run>.``) and consumer-group prefix (``trk<run>-``, so
faust's app id and its internal changelog/repartition topics are unique too), creates the
tickpipe topics with ``ensure_topics`` and runs the tracker as a subprocess, as deployed. The
test plays the planner, the writer and the failing stages: it publishes ``planned`` and ``unit``
events on ``progress`` and failure records on ``failures`` — with duplicates and out of order —
and reads ``request-events``. Everything with the prefixes is deleted afterwards.

The broker does not auto-create topics, so these tests also prove that faust creates its own
internal topics.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from tickpipe_cli import requests as request_ops
from tickpipe_cli.progress import PlainDisplay
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.producer import make_producer, produce_all
from tickpipe_shared.kafka.records import OutRecord
from tickpipe_shared.kafka.topics import FAILURES, PROGRESS, REQUEST_EVENTS, ensure_topics
from tickpipe_shared.wire.failures import Failure
from tickpipe_shared.wire.progress import RequestPlanned, UnitFinished, encode_progress
from tickpipe_shared.wire.requests import parse_request

pytestmark = pytest.mark.integration

PARTITIONS = 3
START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@dataclass
class Env:
    settings: Settings
    run: str
    log_dir: Path
    procs: list[subprocess.Popen[bytes]]

    def env(self) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "TICKPIPE_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
            "TICKPIPE_TOPIC_PREFIX": s.topic_prefix,
            "TICKPIPE_CONSUMER_GROUP_PREFIX": s.consumer_group_prefix,
            "TICKPIPE_TOPIC_PARTITIONS": str(s.topic_partitions),
            "TICKPIPE_METRICS_PORT": str(s.metrics_port),
            "TICKPIPE_METRICS_HOST": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
            "TMPDIR": str(self.log_dir),  # faust's (empty) data directory goes there
        }

    def start_tracker(self) -> subprocess.Popen[bytes]:
        """Start ``tickpipe-tracker`` and wait for its /healthz."""
        exe = Path(sys.executable).parent / "tickpipe-tracker"
        log = (self.log_dir / f"tracker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen([str(exe)], env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(self.settings.metrics_port):
            assert proc.poll() is None, f"tracker exited {proc.returncode}:\n{self.logs()}"
            assert time.monotonic() < deadline, f"tracker not healthy:\n{self.logs()}"
            time.sleep(0.3)
        return proc

    def stop_tracker(self, proc: subprocess.Popen[bytes]) -> int:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=60)

    def logs(self) -> str:
        return "\n".join(p.read_text()[-6000:] for p in sorted(self.log_dir.glob("tracker-*.log")))

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.settings.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())


@pytest.fixture
async def env(infra: Settings, tmp_path: Path) -> AsyncIterator[Env]:
    run = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap=infra.kafka_bootstrap,
        topic_prefix=f"trk{run}.",
        consumer_group_prefix=f"trk{run}-",
        topic_partitions=PARTITIONS,
        metrics_port=_free_port(),
    )
    await ensure_topics(settings)
    e = Env(settings, run, tmp_path, [])
    try:
        yield e
    finally:
        for p in e.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            ours = [t for t in await admin.list_topics() if t.startswith(f"trk{run}")]
            if ours:
                await admin.delete_topics(ours)
        finally:
            await admin.close()


async def publish(settings: Settings, records: list[OutRecord]) -> None:
    producer = make_producer(settings, client_id="test-tracker")
    await producer.start()
    try:
        for r in records:  # one by one: the order within a partition is the test's order
            await produce_all(producer, [r])
    finally:
        await producer.stop()


def progress(settings: Settings, ev: RequestPlanned | UnitFinished) -> OutRecord:
    return OutRecord(settings.topic(PROGRESS), ev.request_id.encode(), encode_progress(ev))


def failure(settings: Settings, f: Failure) -> OutRecord:
    return OutRecord(settings.topic(FAILURES), (f.unit_key or "x").encode(), f.to_json())


def unit_key(hour: int) -> str:
    return f"dukascopy-bi5|EURUSD|ticks|2019-02-04T{hour:02d}:00:00Z"


def planned(rid: str, units: int) -> RequestPlanned:
    return RequestPlanned(rid, "dukascopy-bi5", "EURUSD", "ticks", units)


def unit(rid: str, hour: int, rows: int) -> UnitFinished:
    return UnitFinished(rid, unit_key(hour), "EURUSD", "stored" if rows else "empty", rows)


def unit_failure(rid: str | None, hour: int, stage: str = "decoder") -> Failure:
    return Failure(stage, f"corrupt payload at hour {hour}", "DecodeError",
                   key=unit_key(hour), unit_key=unit_key(hour), request_id=rid)  # fmt: skip


class EventReader:
    """Reads ``request-events`` from the beginning, every partition, no group."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = AIOKafkaConsumer(
            settings.topic(REQUEST_EVENTS),
            bootstrap_servers=settings.kafka_bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def __aenter__(self) -> EventReader:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def poll(self) -> None:
        for records in (await self.consumer.getmany(timeout_ms=200)).values():
            for r in records:
                event = json.loads(r.value)
                assert r.key.decode() == event["request_id"]
                self.events.append((r.key.decode(), event))

    def of(self, rid: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for k, e in self.events if k == rid and kind in (None, e["event"])]

    async def until(self, what: str, cond: Any, within: float = 60.0, logs: Any = None) -> None:
        deadline = time.monotonic() + within
        while not cond():
            assert time.monotonic() < deadline, (
                f"timed out waiting until {what}; events: {self.events}\n{logs() if logs else ''}"
            )
            await self.poll()

    async def settle(self, seconds: float = 3.0) -> None:
        """Read whatever else arrives within ``seconds`` (a duplicate completion, say)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await self.poll()


async def test_tracker_emits_one_completion_with_deduplicated_counts(env: Env) -> None:
    s = env.settings
    env.start_tracker()
    a, b, c, d = (f"{name}-{env.run}" for name in ("req-a", "req-b", "req-c", "req-d"))
    candles_planned = RequestPlanned(d, "dukascopy-json", "EURUSD", "candles:1m:bid", 2,
                                     skipped=3)  # fmt: skip
    day_key = "dukascopy-json|EURUSD|candles:1m:bid|2019-02-0{}T00:00:00Z".format
    refused = Failure("fetcher-planner", "unknown instrument 'NOPE'", "UnknownInstrumentError",
                      key="NOPE", unit_key="NOPE", request_id=b)  # fmt: skip
    await publish(
        s,
        [
            # A: a unit before the plan, the plan, duplicates of a unit and of a failure.
            progress(s, unit(a, 3, 50)),
            progress(s, planned(a, 4)),
            progress(s, unit(a, 0, 100)),
            progress(s, unit(a, 0, 100)),
            progress(s, unit(a, 1, 0)),
            failure(s, unit_failure(a, 2)),
            failure(s, unit_failure(a, 2, stage="validator")),
            failure(s, unit_failure(None, 5)),  # unattributed: ignored
            # B: refused by the planner.
            failure(s, refused),
            # C: planned, half done.
            progress(s, planned(c, 2)),
            progress(s, unit(c, 7, 10)),
            # D: candles resumed with 3 units skipped; a suspect-empty day, twice, and a stored
            # day.
            progress(s, candles_planned),
            progress(s, UnitFinished(d, day_key(4), "EURUSD", "suspect-empty", 0)),
            progress(s, UnitFinished(d, day_key(4), "EURUSD", "suspect-empty", 0)),
            progress(s, UnitFinished(d, day_key(5), "EURUSD", "stored", 1440)),
        ],
    )
    async with EventReader(s) as reader:
        await reader.until(
            "A and D completed and B rejected",
            lambda: (
                reader.of(a, "completed") and reader.of(b, "rejected") and reader.of(d, "completed")
            ),
            logs=env.logs,
        )
        # Duplicates after completion: nothing is emitted again.
        await publish(s, [progress(s, unit(a, 0, 100)), failure(s, unit_failure(a, 2)),
                          progress(s, planned(a, 4))])  # fmt: skip
        await reader.until("C progresses", lambda: reader.of(c, "progress"), logs=env.logs)
        await reader.settle()

    (done,) = reader.of(a, "completed")
    assert {k: done[k] for k in ("units", "stored", "empty", "failed", "ticks")} == {
        "units": 4, "stored": 2, "empty": 1, "failed": 1, "ticks": 150,
    }  # fmt: skip
    assert [f["reason"] for f in done["failures"]] == ["corrupt payload at hour 2"]
    assert done["failures"][0]["unit_key"] == unit_key(2)
    assert done["instrument"] == "EURUSD" and done["schema"] == 1
    assert reader.of(a)[-1] is done, "nothing about A after its completion"
    (rejected,) = reader.of(b)
    assert rejected["event"] == "rejected"
    assert rejected["reason"] == "unknown instrument 'NOPE'"
    assert not reader.of(c, "completed")
    assert reader.of(c, "progress")[-1]["stored"] == 1
    (candles_done,) = reader.of(d, "completed")
    assert {k: candles_done[k] for k in ("units", "stored", "empty", "suspect_empty", "failed",
                                         "skipped", "ticks", "kind")} == {
        "units": 2, "stored": 1, "empty": 0, "suspect_empty": 1, "failed": 0, "skipped": 3,
        "ticks": 1440, "kind": "candles:1m:bid",
    }  # fmt: skip
    text = env.metrics()
    assert 'tickpipe_tracker_request_events_total{event="completed"} 2.0' in text
    assert 'tickpipe_tracker_inputs_total{effect="duplicate",kind="unit"}' in text


async def test_tracker_state_survives_a_restart(env: Env) -> None:
    """Stop the tracker half-way; its successor recovers the tables from their changelogs, so
    duplicates of units counted before the restart are still recognised."""
    s = env.settings
    rid = f"req-r-{env.run}"
    proc = env.start_tracker()
    await publish(s, [progress(s, planned(rid, 3)), progress(s, unit(rid, 0, 7))])
    async with EventReader(s) as reader:
        await reader.until("first progress", lambda: reader.of(rid, "progress"), logs=env.logs)
        await asyncio.sleep(4)  # past faust's commit interval (2.8 s): offsets + changelog
        assert env.stop_tracker(proc) == 0, env.logs()
        env.start_tracker()
        await publish(s, [progress(s, unit(rid, 0, 7)), progress(s, unit(rid, 1, 0)),
                          failure(s, unit_failure(rid, 2))])  # fmt: skip
        await reader.until("completion", lambda: reader.of(rid, "completed"), logs=env.logs)
        await reader.settle()
    (done,) = reader.of(rid, "completed")
    assert (done["stored"], done["empty"], done["failed"], done["ticks"]) == (1, 1, 1, 7)


async def test_cli_wait_follows_the_request_to_its_completion(env: Env) -> None:
    """``tickpipe request --wait``'s :func:`wait` against the running tracker: it finds the
    events from the request's publish time on, prints progress and returns the summary."""
    s = env.settings
    env.start_tracker()
    req = parse_request(json.dumps({"instrument": "EURUSD", "source": "dukascopy-bi5",
                                    "from": "2019-02-04T00:00:00Z",
                                    "to": "2019-02-04T03:00:00Z"}).encode())  # fmt: skip
    rid = req.request_id
    console = Console(file=io.StringIO(), width=200)
    waiting = asyncio.create_task(request_ops.wait(s, req, 60, PlainDisplay(console)))
    await asyncio.sleep(1)  # some events arrive after wait() looked at the offsets
    await publish(s, [progress(s, planned(rid, 3)), progress(s, unit(rid, 0, 11)),
                      progress(s, unit(rid, 1, 0)), failure(s, unit_failure(rid, 2))])  # fmt: skip
    result = await waiting
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert result.complete and result.failed == 1, out
    assert (result.expected, result.stored, result.empty, result.ticks) == (3, 1, 1, 11)
    assert "1 stored, 1 empty, 1 failed of 3 units, 11 ticks" in out
    assert "corrupt payload at hour 2" in out

    # A request nobody tracks: the timeout names the tracker.
    other = parse_request(json.dumps({"instrument": "EURUSD", "from": "2019-02-04T00:00:00Z",
                                      "to": "2019-02-04T01:00:00Z"}).encode())  # fmt: skip
    console = Console(file=io.StringIO(), width=400)
    result = await request_ops.wait(s, other, 2, PlainDisplay(console))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert not result.complete
    assert "tracker" in out and "tickpipe-stack status" in out
