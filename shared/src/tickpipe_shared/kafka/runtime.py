"""The stage runtime: one consumer loop and one commit protocol for every data-path service.

Delivery guarantee: **at-least-once** between topics. A checkpoint commits a partition's offset
only after every record produced from it was acknowledged by the broker (or, for the writer,
after the database transaction committed). A crash before the commit re-delivers the records,
so downstream stages may see duplicates; they are harmless because the writer replaces whole
units. Nothing is committed for records whose processing failed for a *retryable* reason.

A stage is a :class:`Processor`: it turns a batch of consumed records into records to produce.
Bad input must not block a partition: a processor reports it as a failure record, and should it
raise anyway, the runtime isolates the record that raised and sends it to the failures topic.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError, MessageSizeTooLargeError

from tickpipe_shared.config import Settings
from tickpipe_shared.kafka import crash
from tickpipe_shared.kafka.failure_records import FailureRecords
from tickpipe_shared.kafka.lag import LagMonitor
from tickpipe_shared.kafka.producer import make_producer, produce_all
from tickpipe_shared.kafka.records import InRecord, OutRecord, RetryableError
from tickpipe_shared.kafka.security import kafka_client_kwargs
from tickpipe_shared.metrics import (
    COMMITS,
    ERRORS,
    LAST_CHECKPOINT,
    RECORDS_CONSUMED,
    RECORDS_PRODUCED,
    RETRIES,
    STAGE_LATENCY,
    Health,
)

log = structlog.get_logger()


class RecordTooLargeError(ValueError):
    """A stage's output record is over the message size limit: the input is failed, not
    retried (a retry would produce the same record)."""


class Processor(Protocol):
    """What a stage does with a batch of records, in partition order.

    Return the records to produce (including failure records for bad input). Raise
    :class:`RetryableError` when a dependency is down: the batch is retried later, uncommitted.
    """

    async def process(self, records: Sequence[InRecord]) -> list[OutRecord]: ...


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """How much the loop gathers before a checkpoint: whichever limit is reached first."""

    max_records: int = 200
    max_bytes: int = 16 * 1024 * 1024
    max_wait_s: float = 0.2
    #: Longest a checkpoint may take before the broker considers the consumer dead and
    #: rebalances (Kafka's max.poll.interval.ms); the fetcher's, which waits on sources, is long.
    max_poll_interval_s: float = 600.0
    #: How long the broker keeps a silent member's partitions (a SIGKILLed replica's), and how
    #: often members heartbeat. aiokafka heartbeats and rejoins from a background task, so a
    #: rebalance never waits for a checkpoint in progress; a partition of a dead member stalls
    #: at most this long plus the rebalance (bounded by ``rebalance_timeout_s``).
    session_timeout_s: float = 10.0
    heartbeat_interval_s: float = 3.0
    rebalance_timeout_s: float = 30.0


    @property
    def partition_fetch_bytes(self) -> int:
        """Bytes the consumer fetches (and buffers) per partition: half a batch, 1–8 MiB. A
        record larger than this still comes (Kafka returns at least one), so it only bounds
        how much waits in memory per assigned partition, however many partitions a replica
        holds."""
        return min(8 * _MIB, max(_MIB, self.max_bytes // 2))

    @property
    def fetch_bytes(self) -> int:
        """Bytes of one fetch over all partitions: two batches, 4–32 MiB."""
        return min(32 * _MIB, max(4 * _MIB, 2 * self.max_bytes))


_MIB = 1024 * 1024


class StageRunner:
    """Consumes ``input_topic`` in consumer group ``group``, runs ``processor``, checkpoints.

    Start with :meth:`run`; stop with :meth:`stop`, which finishes the current checkpoint first.
    """

    def __init__(
        self,
        settings: Settings,
        stage: str,
        input_topic: str,
        processor: Processor,
        health: Health,
        policy: BatchPolicy | None = None,
        group: str | None = None,
        failures: FailureRecords | None = None,
    ) -> None:
        self.settings = settings
        self.stage = stage
        self.input_topic = settings.topic(input_topic)
        self.failures = failures or FailureRecords(settings, stage)
        self.processor = processor
        self.health = health
        self.policy = policy or BatchPolicy()
        self.group = group or settings.group(stage)
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer = make_producer(settings, client_id=f"tickpipe-{stage}")
        self._retry_delay = 0.0

    @property
    def failures_topic(self) -> str:
        """The full name of the topic failure records go to."""
        return self.failures.topic

    def stop(self) -> None:
        """Ask the loop to stop after the checkpoint in progress."""
        self._stopping.set()

    async def run(self) -> None:
        """The worker loop: poll a batch, checkpoint it, repeat until stopped."""
        consumer = AIOKafkaConsumer(
            self.input_topic,
            **kafka_client_kwargs(self.settings),
            group_id=self.group,
            client_id=f"tickpipe-{self.stage}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=self.policy.partition_fetch_bytes,
            fetch_max_bytes=self.policy.fetch_bytes,
            max_poll_interval_ms=int(self.policy.max_poll_interval_s * 1000),
            session_timeout_ms=int(self.policy.session_timeout_s * 1000),
            heartbeat_interval_ms=int(self.policy.heartbeat_interval_s * 1000),
            rebalance_timeout_ms=int(self.policy.rebalance_timeout_s * 1000),
        )
        self._consumer = consumer
        if not await self._start_with_retry(consumer):
            await self._producer.stop()
            return
        log.info("stage started", topic=self.input_topic, group=self.group)
        lag = LagMonitor(consumer, self.group, self.settings.consumer_lag_interval_s)
        lag_task = asyncio.create_task(lag.run(self._stopping), name=f"{self.stage}-lag")
        try:
            while not self._stopping.is_set():
                self.health.beat()
                records = await self._poll(consumer)
                if records:
                    await self.checkpoint(consumer, records)
        finally:
            lag_task.cancel()
            await asyncio.gather(lag_task, return_exceptions=True)
            await consumer.stop()
            await self._producer.stop()
            log.info("stage stopped")

    async def _start_with_retry(self, consumer: AIOKafkaConsumer) -> bool:
        """Start producer and consumer; False when stopped before Kafka answered."""
        # The broker may still be starting (local stack, Kubernetes): keep trying, stay unhealthy.
        delay = 0.5
        while not self._stopping.is_set():
            try:
                await self._producer.start()
                await consumer.start()
                return True
            except KafkaError as e:
                self.health.fail(f"kafka unreachable: {e}")
                log.warning("kafka unreachable, retrying", error=str(e), retry_in_s=delay)
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                except TimeoutError:
                    pass
                delay = min(delay * 2, 10.0)
        return False

    async def _poll(self, consumer: AIOKafkaConsumer) -> list[Any]:
        """Gather records until a :class:`BatchPolicy` limit is reached; partition order kept."""
        policy = self.policy
        records: list[Any] = []
        size = 0
        deadline: float | None = None
        while len(records) < policy.max_records and size < policy.max_bytes:
            timeout = 1.0 if deadline is None else deadline - time.monotonic()
            if timeout <= 0 or self._stopping.is_set():
                break
            got = await consumer.getmany(
                timeout_ms=int(timeout * 1000), max_records=policy.max_records - len(records)
            )
            if not got:
                if deadline is None:
                    break  # idle: let the loop beat
                continue
            deadline = deadline or time.monotonic() + policy.max_wait_s
            for tp, batch in got.items():
                for r in batch:
                    if records and size + len(r.value or b"") > policy.max_bytes:
                        # Over the byte budget: leave the rest of this partition (and of the
                        # others) for the next checkpoint by rewinding to the first one left.
                        consumer.seek(tp, r.offset)
                        self._leave(consumer, got, after=tp)
                        return records
                    records.append(r)
                    size += len(r.value or b"")
        return records

    @staticmethod
    def _leave(consumer: AIOKafkaConsumer, got: dict[Any, list[Any]], after: Any) -> None:
        """Seek the partitions after ``after`` in ``got`` back to their first record."""
        seen = False
        for tp, batch in got.items():
            if seen and batch:
                consumer.seek(tp, batch[0].offset)
            seen = seen or tp == after

    async def checkpoint(self, consumer: AIOKafkaConsumer, records: Sequence[Any]) -> None:
        """The commit protocol, one batch of consumed records at a time.

        1. Process the records into output records (bad input becomes failure records).
        2. Produce every output record and wait until the broker acknowledged all of them.
        3. Commit, per partition, the offset after the last record processed.
        A :class:`RetryableError` or a Kafka error in 1 or 2 skips 3: the consumer seeks back to
        the first record of the batch and the same records are processed again after a backoff.
        """
        started = time.monotonic()
        for r in records:
            RECORDS_CONSUMED.labels(self.stage, r.topic).inc()
        try:
            crash.reached(self.stage, "before-process")  # TICKPIPE_CRASH_AT markers: crash.py
            # 1. process
            outputs = await self._process_isolating_poison(records)
            crash.reached(self.stage, "after-process")
            # 2. produce and wait for acknowledgement
            try:
                await produce_all(self._producer, outputs)
            except MessageSizeTooLargeError:
                # Retrying cannot make a record smaller: find the input(s) whose output is too
                # big and fail them with the reason, so the partition moves on.
                await self._renew_producer()
                outputs = await self._produce_isolating_oversized(records)
        except (RetryableError, KafkaError) as e:
            await self._rewind(consumer, records, e)
            return
        crash.reached(self.stage, "after-produce")
        for o in outputs:
            RECORDS_PRODUCED.labels(self.stage, o.topic).inc()
        # 3. commit
        offsets: dict[TopicPartition, int] = {}
        for r in records:
            offsets[TopicPartition(r.topic, r.partition)] = r.offset + 1
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as e:
            # A rebalance moved the partitions away: their new owner re-processes from the last
            # commit. Duplicates follow; loss does not.
            ERRORS.labels(self.stage, type(e).__name__).inc()
            log.warning("commit failed; records will be redelivered", error=str(e))
            return
        crash.reached(self.stage, "after-commit")
        self._retry_delay = 0.0
        COMMITS.labels(self.stage).inc()
        LAST_CHECKPOINT.labels(self.stage).set(time.time())
        STAGE_LATENCY.labels(self.stage).observe(time.monotonic() - started)

    async def _renew_producer(self) -> None:
        """A fresh producer: after a batch the broker refused, the idempotent producer's
        sequence numbers are out of step with the broker's (OutOfOrderSequenceNumber)."""
        await self._producer.stop()
        self._producer = make_producer(self.settings, client_id=f"tickpipe-{self.stage}")
        await self._producer.start()

    async def _produce_isolating_oversized(self, records: Sequence[Any]) -> list[OutRecord]:
        """Process and produce ``records`` one at a time; an input whose outputs the broker or
        the producer refuses as too large (``MessageSizeTooLargeError``) becomes one failure
        record saying so. Returns everything produced. Other Kafka errors propagate."""
        produced: list[OutRecord] = []
        for r in records:
            outputs = await self._process_isolating_poison([r])
            try:
                await produce_all(self._producer, outputs)
            except MessageSizeTooLargeError as e:
                await self._renew_producer()
                biggest = max((len(o.value) + len(o.key or b"") for o in outputs), default=0)
                outputs = [self.failures.record(r, RecordTooLargeError(
                    f"an output record of {biggest} bytes is over the message size limit "
                    f"(TICKPIPE_TOPIC_MAX_MESSAGE_BYTES={self.settings.topic_max_message_bytes} "
                    f"and the topic's max.message.bytes): {e}; not retried"
                ))]  # fmt: skip
                await produce_all(self._producer, outputs)
            produced += outputs
        return produced

    async def _process_isolating_poison(self, records: Sequence[Any]) -> list[OutRecord]:
        try:
            return await self.processor.process(records)
        except (RetryableError, KafkaError):
            raise
        except Exception as e:
            if len(records) == 1:
                return [self.failures.record(records[0], e)]
            # A bug or unforeseen input somewhere in the batch: find the record(s) that raise so
            # the others go through and the partition keeps moving.
            log.warning("batch failed, isolating records", error=repr(e), records=len(records))
            outputs: list[OutRecord] = []
            for r in records:
                outputs += await self._process_isolating_poison([r])
            return outputs

    async def _rewind(
        self, consumer: AIOKafkaConsumer, records: Sequence[Any], e: Exception
    ) -> None:
        RETRIES.labels(self.stage).inc()
        ERRORS.labels(self.stage, type(e).__name__).inc()
        first: dict[TopicPartition, int] = {}
        for r in records:
            first.setdefault(TopicPartition(r.topic, r.partition), r.offset)
        for tp, offset in first.items():
            if tp in consumer.assignment():
                consumer.seek(tp, offset)
        self._retry_delay = min(max(self._retry_delay * 2, 0.5), 30.0)
        delay = random.uniform(self._retry_delay / 2, self._retry_delay)
        self.health.beat()  # waiting for a dependency is not a hung loop
        log.warning(
            "retryable error, batch will be retried", error=str(e), retry_in_s=round(delay, 2)
        )
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        except TimeoutError:
            pass
