"""``StageRunner`` against the real Kafka: the commit protocol with a toy processor.

Every test gets scratch topics (``rt<run>.toy-in``, ``rt<run>.toy-out``, ``rt<run>.failures``,
3 partitions each) and its own consumer group, deleted afterwards. The toy processor echoes each
input record to ``toy-out`` (value ``out:<input value>``); it raises for the value ``poison`` and
can raise :class:`RetryableError` a given number of times first.

The crash tests run the runner in a subprocess — this file run as a script — with
``TICKPIPE_CRASH_AT`` set (:mod:`tickpipe_shared.kafka.crash`), and restart it in-process.

Note: a crashed consumer does not leave its group, so the restart waits for the broker to expire
its session (aiokafka's default ``session_timeout_ms``, 10 s) before it is assigned partitions.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import REGISTRY
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka import crash, runtime
from tickpipe_shared.kafka.records import OutRecord, RetryableError
from tickpipe_shared.kafka.runtime import BatchPolicy, StageRunner
from tickpipe_shared.kafka.topics import FAILURES
from tickpipe_shared.metrics import Health

pytestmark = pytest.mark.integration

IN, OUT = "toy-in", "toy-out"
PARTITIONS = 3
#: Small batches: several checkpoints per test, so "the first batch" is a strict subset.
POLICY = BatchPolicy(max_records=4, max_bytes=1 << 20, max_wait_s=0.2)


class Echo:
    """One ``out:<value>`` record per input; ``poison`` raises; ``retryable`` RetryableErrors
    are raised by the first calls."""

    def __init__(self, out_topic: str, retryable: int = 0) -> None:
        self.out_topic = out_topic
        self.retryable = retryable
        self.calls: list[list[tuple[int, int]]] = []

    async def process(self, records: Sequence[Any]) -> list[OutRecord]:
        self.calls.append([(r.partition, r.offset) for r in records])
        if self.retryable > 0:
            self.retryable -= 1
            raise RetryableError("toy dependency down")
        for r in records:
            if r.value == b"poison":
                raise ValueError(f"cannot digest {r.value!r}")
        return [OutRecord(self.out_topic, r.key, b"out:" + (r.value or b"")) for r in records]


@dataclass
class Scratch:
    """Scratch topics and a consumer group on the real broker."""

    settings: Settings
    group: str
    stage: str
    log_dir: Path
    events: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka_bootstrap

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    def runner(self, processor: Echo, stage: str | None = None) -> StageRunner:
        return StageRunner(
            self.settings, stage or self.stage, IN, processor, Health(), POLICY, group=self.group
        )

    async def produce(self, values: Sequence[bytes], partition: int | None = None) -> None:
        """Inputs keyed ``k<i>`` (spread over partitions unless ``partition`` is given)."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        try:
            for i, v in enumerate(values):
                await producer.send_and_wait(
                    self.topic(IN), v, key=f"k{i}".encode(), partition=partition
                )
        finally:
            await producer.stop()

    async def read(self, name: str) -> list[Any]:
        """Every record of a topic, from the beginning up to its current end."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic(name), p) for p in range(PARTITIONS)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            out: list[Any] = []
            deadline = time.monotonic() + 30
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                assert time.monotonic() < deadline, f"could not read {name} to its end"
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    out += [
                        r for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)]
                    ]
            return out
        finally:
            await consumer.stop()

    async def outputs(self) -> list[bytes]:
        return [r.value for r in await self.read(OUT)]

    async def ends(self, name: str = IN) -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic(name), p) for p in range(PARTITIONS)]
            return {tp.partition: off for tp, off in (await consumer.end_offsets(tps)).items()}
        finally:
            await consumer.stop()

    async def committed(self) -> dict[int, int]:
        """The group's committed offsets on the input topic, by partition (absent: none)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(self.group)
        finally:
            await admin.close()
        return {
            tp.partition: meta.offset
            for tp, meta in offsets.items()
            if tp.topic == self.topic(IN) and meta.offset >= 0
        }

    async def drained(self) -> bool:
        ends = {p: e for p, e in (await self.ends()).items() if e > 0}
        return await self.committed() == ends


@pytest.fixture
async def scratch(infra: Settings, tmp_path: Path) -> AsyncIterator[Scratch]:
    run = uuid.uuid4().hex[:8]
    settings = Settings(kafka_bootstrap=infra.kafka_bootstrap, topic_prefix=f"rt{run}.")
    names = [settings.topic(n) for n in (IN, OUT, FAILURES)]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
        yield Scratch(settings, f"rt{run}-toy", f"toy-{run}", tmp_path)
    finally:
        try:
            await admin.delete_topics(names)
        finally:
            await admin.close()


async def eventually(what: str, cond: Callable[[], Awaitable[bool]], within: float = 40.0) -> None:
    deadline = time.monotonic() + within
    while not await cond():
        assert time.monotonic() < deadline, f"timed out after {within:.0f} s waiting until {what}"
        await asyncio.sleep(0.2)


async def run_until(runner: StageRunner, what: str, cond: Callable[[], Awaitable[bool]]) -> None:
    """Run ``runner`` until ``cond`` holds, then stop it (after its current checkpoint)."""
    task = asyncio.create_task(runner.run())
    try:
        await eventually(what, lambda: _alive_and(task, cond))
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)


async def _alive_and(task: asyncio.Task[None], cond: Callable[[], Awaitable[bool]]) -> bool:
    if task.done():
        task.result()  # raise what killed the runner
        raise AssertionError("the runner stopped by itself")
    return await cond()


def metric(name: str, stage: str) -> float:
    return REGISTRY.get_sample_value(name, {"stage": stage}) or 0.0


@pytest.fixture
def spy(scratch: Scratch, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Record, in order, every acknowledged produce and every offset commit of the runtime.

    At each commit it also asks the broker how many output records it holds (end offsets of
    ``toy-out``): what a commit promises must already be on the broker.
    """
    events = scratch.events
    real_produce_all = runtime.produce_all

    async def produce_all(producer: Any, records: Sequence[OutRecord]) -> None:
        await real_produce_all(producer, records)
        events.append(("acked", [r.value for r in records if r.topic == scratch.topic(OUT)]))

    class SpyConsumer(AIOKafkaConsumer):  # type: ignore[misc]
        async def commit(self, offsets: Any = None) -> None:
            on_broker = sum((await scratch.ends(OUT)).values())
            events.append(("commit", {tp.partition: o for tp, o in offsets.items()}, on_broker))
            await super().commit(offsets)

    monkeypatch.setattr(runtime, "produce_all", produce_all)
    monkeypatch.setattr(runtime, "AIOKafkaConsumer", SpyConsumer)
    return events


async def test_outputs_are_acknowledged_before_offsets_are_committed(
    scratch: Scratch, spy: list[tuple[str, Any]]
) -> None:
    values = [f"v{i}".encode() for i in range(13)]
    await scratch.produce(values)
    echo = Echo(scratch.topic(OUT))
    await run_until(scratch.runner(echo), "every input is committed", scratch.drained)

    assert sorted(await scratch.outputs()) == sorted(b"out:" + v for v in values)
    assert not await scratch.read(FAILURES)
    commits = [e for e in spy if e[0] == "commit"]
    assert len(commits) == len(echo.calls) >= 2, spy  # one commit per checkpoint, all succeeded
    acked = 0
    for i, event in enumerate(spy):
        if event[0] == "acked":
            acked += len(event[1])
        else:
            assert i > 0 and spy[i - 1][0] == "acked", f"commit without a produce before it: {spy}"
            assert event[2] >= acked, f"commit #{i}: {acked} outputs acked, {event[2]} on broker"
    assert acked == len(values)


async def test_an_oversized_output_fails_its_input_and_the_partition_moves_on(
    scratch: Scratch,
) -> None:
    """The broker refuses an output record (over the topic's max.message.bytes): retrying
    cannot help, so that input becomes one failure record naming the limit, its neighbours go
    through, and the batch is committed — never retried forever (MessageSizeTooLargeError)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=scratch.bootstrap)
    await admin.start()
    small = scratch.topic("toy-small")
    try:
        await admin.create_topics(
            [NewTopic(small, 1, 1, topic_configs={"max.message.bytes": "512"})]
        )
    finally:
        await admin.close()
    await scratch.produce([b"ok-1", b"x" * 2048, b"ok-2"], partition=0)
    runner = scratch.runner(Echo(small))
    await run_until(runner, "every input is committed", scratch.drained)
    rejected = REGISTRY.get_sample_value(
        "tickpipe_errors_total", {"stage": scratch.stage, "error": "RecordTooLargeError"}
    )
    assert rejected and rejected >= 1
    assert await scratch.committed() == {0: 3}
    [failure] = [json.loads(r.value) for r in await scratch.read(FAILURES)]
    assert (failure["offset"], failure["error_class"]) == (1, "RecordTooLargeError")
    assert "over the message size limit (TICKPIPE_TOPIC_MAX_MESSAGE_BYTES=" in failure["reason"]
    assert "not retried" in failure["reason"]


async def test_retryable_error_retries_then_commits_once(
    scratch: Scratch, spy: list[tuple[str, Any]]
) -> None:
    values = [f"r{i}".encode() for i in range(3)]
    await scratch.produce(values, partition=1)
    echo = Echo(scratch.topic(OUT), retryable=2)
    retries = metric("tickpipe_checkpoint_retries_total", scratch.stage)
    commits = metric("tickpipe_commits_total", scratch.stage)
    await run_until(scratch.runner(echo), "every input is committed", scratch.drained)

    batch = [(1, 0), (1, 1), (1, 2)]
    assert echo.calls == [batch, batch, batch]  # the rewind re-delivered the same records
    assert sorted(await scratch.outputs()) == sorted(b"out:" + v for v in values)  # once each
    assert [e[0] for e in spy] == ["acked", "commit"]
    assert spy[1][1] == {1: 3}
    assert metric("tickpipe_checkpoint_retries_total", scratch.stage) == retries + 2
    assert metric("tickpipe_commits_total", scratch.stage) == commits + 1
    assert await scratch.committed() == {1: 3}
    assert not await scratch.read(FAILURES)


async def test_poison_record_becomes_one_failure_and_the_partition_moves_on(
    scratch: Scratch,
) -> None:
    values = [b"g0", b"g1", b"poison", b"g3", b"g4", b"g5"]
    await scratch.produce(values, partition=2)
    echo = Echo(scratch.topic(OUT))
    runner = scratch.runner(echo)
    task = asyncio.create_task(runner.run())
    try:
        await eventually("the batch with the poison is committed", scratch.drained)
        await scratch.produce([b"after"], partition=2)  # the partition is not stuck
        await eventually("the record after the poison is committed", scratch.drained)
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)

    good = [v for v in values if v != b"poison"] + [b"after"]
    assert sorted(await scratch.outputs()) == sorted(b"out:" + v for v in good)
    failures = [json.loads(r.value) for r in await scratch.read(FAILURES)]
    assert len(failures) == 1, failures
    (f,) = failures
    assert (f["topic"], f["partition"], f["offset"]) == (scratch.topic(IN), 2, 2)
    assert f["stage"] == scratch.stage and f["error_class"] == "ValueError"
    assert "cannot digest b'poison'" in f["reason"] and f["key"] == "k2"
    assert await scratch.committed() == {2: 7}


async def test_a_batch_stays_within_max_bytes(scratch: Scratch) -> None:
    await scratch.produce([b"x" * 1000] * 40, partition=0)
    echo = Echo(scratch.topic(OUT))
    policy = BatchPolicy(max_records=1000, max_bytes=4000, max_wait_s=0.2)
    runner = StageRunner(
        scratch.settings, scratch.stage, IN, echo, Health(), policy, group=scratch.group
    )
    await run_until(runner, "every input is committed", scratch.drained)
    biggest = max(len(c) for c in echo.calls) * 1000
    # Gathering stops once max_bytes is reached: at most one record more than the limit.
    assert biggest < policy.max_bytes + 1000, f"a {biggest}-byte batch, limit {policy.max_bytes}"


# --- crash markers ----------------------------------------------------------------------------


def crash_subprocess(scratch: Scratch, marker: str) -> subprocess.Popen[bytes]:
    """This file as a script: the Echo runner with ``TICKPIPE_CRASH_AT=<stage>:<marker>``."""
    env = {**os.environ, crash.ENV: f"{scratch.stage}:{marker}"}
    log = (scratch.log_dir / "runner.log").open("ab")
    return subprocess.Popen(
        [sys.executable, __file__, scratch.bootstrap, scratch.settings.topic_prefix,
         scratch.group, scratch.stage],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


async def crash_and_restart(
    scratch: Scratch, marker: str, n_inputs: int
) -> tuple[list[bytes], dict[int, int], list[bytes]]:
    """Run the subprocess until the marker kills it, then restart in-process until drained.

    Returns (outputs before the restart, committed offsets before the restart, all outputs).
    """
    await scratch.produce([f"c{i}".encode() for i in range(n_inputs)])
    proc = crash_subprocess(scratch, marker)
    try:
        status = await asyncio.to_thread(proc.wait, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = (scratch.log_dir / "runner.log").read_text(errors="replace")
    assert status == crash.EXIT_STATUS, f"exit {status}, not the crash marker:\n{log[-3000:]}"
    assert f"crashing at {scratch.stage}:{marker}" in log
    before = await scratch.outputs()
    committed = await scratch.committed()
    echo = Echo(scratch.topic(OUT))
    await run_until(scratch.runner(echo), "the restarted runner committed every input",
                    scratch.drained)  # fmt: skip
    return before, committed, await scratch.outputs()


async def test_crash_after_produce_reprocesses_the_batch(scratch: Scratch) -> None:
    before, committed, after = await crash_and_restart(scratch, "after-produce:1", 12)
    assert committed == {}, "the batch's offsets were committed although the process died first"
    assert 1 <= len(before) <= POLICY.max_records
    counts = Counter(after)
    assert set(counts) == {f"out:c{i}".encode() for i in range(12)}
    # At-least-once: exactly the first batch's outputs are duplicated.
    assert {v for v, c in counts.items() if c == 2} == set(before)
    assert max(counts.values()) == 2 and len(after) == 12 + len(before)
    assert not await scratch.read(FAILURES)


async def test_crash_after_commit_does_not_reprocess(scratch: Scratch) -> None:
    before, committed, after = await crash_and_restart(scratch, "after-commit:2", 12)
    # Two checkpoints committed: exactly their records were produced, and none again later.
    assert sum(committed.values()) == len(before) >= 2
    assert sorted(after) == sorted(f"out:c{i}".encode() for i in range(12))
    assert not await scratch.read(FAILURES)


# --- the crash subprocess -----------------------------------------------------------------------


async def _serve(bootstrap: str, prefix: str, group: str, stage: str) -> None:
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
    runner = StageRunner(
        settings, stage, IN, Echo(settings.topic(OUT)), Health(), POLICY, group=group
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.stop)
    await runner.run()


if __name__ == "__main__":
    asyncio.run(_serve(*sys.argv[1:5]))
