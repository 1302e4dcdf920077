"""The download pipeline: units flow one by one, no rounds; offsets commit only contiguous work.

The other stages checkpoint batch by batch (:class:`~tickpipe_shared.kafka.runtime.StageRunner`):
a batch is processed, produced, committed, then the next is polled. For the downloader that is
a *round*: the next units wait for the slowest unit of the batch, so one slow or dead host
stalls every host, and a finished unit's slot stays idle until the round ends. Here instead

* every consumed ``fetch-units`` record becomes a task at once (up to ``capacity`` units held
  in the process: bounded memory, and back-pressure on the consumer), which downloads it
  through :meth:`Downloader.download <tickpipe_fetcher.downloader.Downloader.download>` — the
  host slots, rate limiter and breaker admit its requests, so a dead host's units wait on
  their own host, never on the others;
* a finished unit's output (raw payload, failure record, or the unit re-queued for a delayed
  retry) is produced and acknowledged, then the unit is marked done and its place is free;
* the consumer commits, per partition, the **lowest unfinished offset**
  (:class:`OffsetTracker`): an offset is committed only when every record before it is done,
  so a crash re-delivers exactly the unfinished units and those after them (at-least-once).

:class:`UnitPipeline` is the Kafka-free core (tests and ``bench/bench_fetch.py`` drive it);
:class:`PipelineRunner` feeds it from the consumer and commits.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.lag import LagMonitor
from tickpipe_shared.kafka.producer import make_producer
from tickpipe_shared.kafka.records import InRecord, OutRecord
from tickpipe_shared.kafka.security import kafka_client_kwargs
from tickpipe_shared.metrics import (
    COMMITS,
    ERRORS,
    LAST_CHECKPOINT,
    RECORDS_CONSUMED,
    RECORDS_PRODUCED,
    Health,
)

log = structlog.get_logger()

Partition = tuple[str, int]
Download = Callable[[InRecord], Awaitable[OutRecord]]
Emit = Callable[[OutRecord], Awaitable[None]]


@dataclass
class _PartitionOffsets:
    started: list[int] = field(default_factory=list)  # min-heap of offsets in flight or done
    done: set[int] = field(default_factory=set)
    next_commit: int | None = None  # lowest unfinished offset once known


class OffsetTracker:
    """Which offsets of each partition may be committed: all before the lowest unfinished one.

    State is bounded by the units in flight: finished offsets are forgotten as soon as every
    offset before them is finished too.
    """

    def __init__(self) -> None:
        self._parts: dict[Partition, _PartitionOffsets] = {}

    def start(self, part: Partition, offset: int) -> None:
        """``offset`` of ``part`` was consumed and is being worked on (offsets ascend)."""
        p = self._parts.setdefault(part, _PartitionOffsets())
        heapq.heappush(p.started, offset)
        if p.next_commit is None:
            p.next_commit = offset

    def finish(self, part: Partition, offset: int) -> None:
        """``offset`` of ``part`` is done (its output acknowledged)."""
        p = self._parts.get(part)
        if p is None:
            return  # the partition was revoked meanwhile
        p.done.add(offset)
        while p.started and p.started[0] in p.done:
            low = heapq.heappop(p.started)
            p.done.discard(low)
            p.next_commit = low + 1

    def committable(self) -> dict[Partition, int]:
        """Per partition, the offset to commit: the lowest unfinished one (or one past the last
        finished when nothing is in flight)."""
        return {
            part: (p.started[0] if p.started else p.next_commit)
            for part, p in self._parts.items()
            if p.next_commit is not None
        }

    def in_flight(self, part: Partition) -> int:
        """Offsets of ``part`` started and not yet committable."""
        p = self._parts.get(part)
        return len(p.started) if p else 0

    def forget(self, parts: Collection[Partition]) -> None:
        """Drop the state of revoked partitions."""
        for part in parts:
            self._parts.pop(part, None)


class UnitPipeline:
    """Runs ``download`` for each submitted record, at most ``capacity`` at once, and ``emit``s
    each output as soon as it is ready; the record's offset is finished after ``emit``.

    ``emit`` should retry what it cannot deliver; if it raises, the offset stays unfinished
    (nothing after it is committed) and the error is logged.
    """

    def __init__(self, download: Download, emit: Emit, capacity: int) -> None:
        self._download = download
        self._emit = emit
        self._room = asyncio.Semaphore(max(1, capacity))
        self.offsets = OffsetTracker()
        self._tasks: dict[asyncio.Task[None], Partition] = {}
        self.finished = 0

    async def submit(self, record: InRecord) -> None:
        """Start downloading ``record``; waits while ``capacity`` units are in the process."""
        await self._room.acquire()
        part = (record.topic, record.partition)
        self.offsets.start(part, record.offset)
        task = asyncio.create_task(self._run(record, part))
        self._tasks[task] = part
        task.add_done_callback(self._done)

    async def _run(self, record: InRecord, part: Partition) -> None:
        try:
            out = await self._download(record)
            await self._emit(out)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug: keep the offset unfinished, keep the others moving
            log.error("unit could not be finished", error=repr(e), offset=record.offset)
            return
        self.offsets.finish(part, record.offset)
        self.finished += 1

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        self._room.release()

    @property
    def active(self) -> int:
        """Units submitted and not yet finished."""
        return len(self._tasks)

    async def drain(self) -> None:
        """Wait until every submitted unit is finished."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def cancel(self, parts: Collection[Partition] | None = None) -> None:
        """Cancel the units of ``parts`` (all when None) and forget those partitions' offsets;
        their records are downloaded again by whoever consumes them next."""
        doomed = [t for t, p in self._tasks.items() if parts is None or p in parts]
        for t in doomed:
            t.cancel()
        if doomed:
            await asyncio.wait(doomed)
        self.offsets.forget(parts if parts is not None else list(self.offsets.committable()))


class PipelineRunner:
    """Consumes ``fetch-units`` into a :class:`UnitPipeline`, produces its outputs, commits.

    Commits every ``commit_interval_s`` (and on stop, on revocation) the offsets the
    :class:`OffsetTracker` allows. A produce that fails is retried with backoff inside the
    unit's task (the unit stays unfinished meanwhile), so the broker being away costs time,
    never a record.
    """

    def __init__(
        self,
        settings: Settings,
        stage: str,
        input_topic: str,
        download: Download,
        health: Health,
        group: str,
        capacity: int,
        commit_interval_s: float = 1.0,
    ) -> None:
        self.settings = settings
        self.stage = stage
        self.input_topic = settings.topic(input_topic)
        self.health = health
        self.group = group
        self.commit_interval_s = commit_interval_s
        self._producer = make_producer(settings, client_id=f"tickpipe-{stage}")
        self.pipeline = UnitPipeline(download, self._produce, capacity)
        self._stopping = asyncio.Event()
        self._committed: dict[Partition, int] = {}

    def stop(self) -> None:
        """Stop consuming; units in flight are cancelled and re-delivered later."""
        self._stopping.set()

    async def _produce(self, out: OutRecord) -> None:
        delay = 0.5
        while True:
            try:
                fut = await self._producer.send(
                    out.topic, value=out.value, key=out.key, headers=out.headers
                )
                await fut
                RECORDS_PRODUCED.labels(self.stage, out.topic).inc()
                return
            except KafkaError as e:
                ERRORS.labels(self.stage, type(e).__name__).inc()
                log.warning("produce failed, retrying", error=str(e), retry_in_s=delay)
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, 30.0)

    async def run(self) -> None:
        """Consume, download, produce and commit until stopped."""
        consumer = AIOKafkaConsumer(
            **kafka_client_kwargs(self.settings),
            group_id=self.group,
            client_id=f"tickpipe-{self.stage}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Records are handed to the pipeline as they come; the poll interval only bounds
            # how long the consumer may wait for room in it.
            max_poll_interval_ms=3_600_000,
        )
        consumer.subscribe([self.input_topic], listener=_Revocations(self, consumer))
        while not self._stopping.is_set():
            try:
                await self._producer.start()
                await consumer.start()
                break
            except KafkaError as e:
                self.health.fail(f"kafka unreachable: {e}")
                await asyncio.sleep(2.0)
        else:
            return
        log.info("stage started", topic=self.input_topic, group=self.group, mode="pipeline")
        # Lag counts committed offsets, so units held in the pipeline still count as lag.
        lag = LagMonitor(consumer, self.group, self.settings.consumer_lag_interval_s)
        lag_task = asyncio.create_task(lag.run(self._stopping), name=f"{self.stage}-lag")
        last_commit = time.monotonic()
        try:
            while not self._stopping.is_set():
                self.health.beat()
                got = await consumer.getmany(timeout_ms=200, max_records=100)
                for batch in got.values():
                    for r in batch:
                        RECORDS_CONSUMED.labels(self.stage, r.topic).inc()
                        await self.pipeline.submit(r)
                if time.monotonic() - last_commit >= self.commit_interval_s:
                    await self.commit(consumer)
                    last_commit = time.monotonic()
        finally:
            lag_task.cancel()
            await asyncio.gather(lag_task, return_exceptions=True)
            await self.pipeline.cancel()
            await consumer.stop()
            await self._producer.stop()
            log.info("stage stopped")

    async def commit(self, consumer: AIOKafkaConsumer, parts: Collection[Partition] = ()) -> None:
        """Commit what advanced since the last commit (only ``parts`` when given)."""
        offsets = {
            TopicPartition(*part): offset
            for part, offset in self.pipeline.offsets.committable().items()
            if (not parts or part in parts) and self._committed.get(part) != offset
        }
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as e:
            ERRORS.labels(self.stage, type(e).__name__).inc()
            log.warning("commit failed; records will be redelivered", error=str(e))
            return
        for tp, offset in offsets.items():
            self._committed[(tp.topic, tp.partition)] = offset
        COMMITS.labels(self.stage).inc()
        LAST_CHECKPOINT.labels(self.stage).set(time.time())


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    """On revocation: commit what is done, cancel the rest (the new owner re-downloads it)."""

    def __init__(self, runner: PipelineRunner, consumer: AIOKafkaConsumer) -> None:
        self.runner, self.consumer = runner, consumer

    async def on_partitions_revoked(self, revoked: Collection[Any]) -> None:
        parts = [(tp.topic, tp.partition) for tp in revoked]
        await self.runner.commit(self.consumer, parts)
        await self.runner.pipeline.cancel(parts)
        for part in parts:
            self.runner._committed.pop(part, None)

    async def on_partitions_assigned(self, assigned: Collection[Any]) -> None:
        """Nothing to do: consumption resumes at the committed offsets."""
