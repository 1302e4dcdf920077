"""Consumer lag: how many records of each partition a consumer group has not committed yet.

Every :class:`~tickpipe_shared.kafka.runtime.StageRunner` runs a :class:`LagMonitor` beside its
loop. Each member reports the partitions assigned to it, so ``sum by (group, topic)`` over all
replicas is the group's lag and no partition is counted twice. The committed offset (not the
consumer's fetch position) is what a restart resumes from, so it is what the lag counts: a stage
stuck retrying a dependency (the writer without its database) shows a lag that grows while the
broker keeps receiving records.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import structlog
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from tickpipe_shared.metrics import CONSUMER_LAG, RECORDS_LOST_TO_RETENTION

log = structlog.get_logger()


def partition_lag(end_offset: int, committed: int | None, log_start: int = 0) -> int:
    """Records of one partition after the group's committed offset (>= 0).

    ``end_offset`` is the partition's high watermark (the offset the next record will get),
    ``committed`` the group's committed offset (the next record it will process) or ``None``
    when the group never committed there, in which case the whole retained log counts
    (``auto_offset_reset="earliest"``): ``end_offset - log_start``. A committed offset past the
    end (a truncated or re-created topic) is lag 0, not a negative number.
    """
    base = log_start if committed is None else max(committed, log_start)
    return max(end_offset - base, 0)


def lost_to_retention(committed: int | None, log_start: int) -> int:
    """Records between the group's committed offset and the partition's log start offset:
    deleted by retention before the group processed them (0 when nothing was lost, or the
    group never committed there). A consumer positioned there resets to the log start
    (``auto_offset_reset="earliest"``) and goes on as if nothing happened, so this is the only
    trace of the loss."""
    return 0 if committed is None else max(log_start - committed, 0)


def consumer_lag(
    end_offsets: Mapping[TopicPartition, int],
    committed: Mapping[TopicPartition, int | None],
    log_starts: Mapping[TopicPartition, int] | None = None,
) -> dict[TopicPartition, int]:
    """:func:`partition_lag` of every partition in ``end_offsets`` (missing commits count as
    ``None``, missing log starts as 0)."""
    starts = log_starts or {}
    return {
        tp: partition_lag(end, committed.get(tp), starts.get(tp, 0))
        for tp, end in end_offsets.items()
    }


class LagMonitor:
    """Sets ``tickpipe_consumer_lag{group,topic,partition}`` every ``interval_s`` seconds for the
    partitions assigned to ``consumer``, and removes the series of partitions it lost (their new
    owner reports them).

    It also sets ``tickpipe_consumer_records_lost_to_retention`` (:func:`lost_to_retention`)
    and logs an error naming the offsets whenever retention deleted records the group had not
    committed yet: the stage skips them silently otherwise (a batch topic's retention shorter
    than the stage's lag).

    Cost per update: two ListOffsets requests (high watermarks, log starts) and one
    OffsetFetch per assigned partition. Kafka errors are logged and the update is skipped; they
    never stop the stage.
    """

    def __init__(self, consumer: Any, group: str, interval_s: float) -> None:
        self._consumer = consumer
        self._group = group
        self._interval_s = interval_s
        self._reported: set[TopicPartition] = set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Update until ``stopping`` is set, then remove this member's series."""
        try:
            while not stopping.is_set():
                await self.update()
                try:
                    await asyncio.wait_for(stopping.wait(), timeout=self._interval_s)
                except TimeoutError:
                    pass
        finally:
            self._forget(set(self._reported))

    async def update(self) -> dict[TopicPartition, int]:
        """Fetch offsets and set the gauges once; returns the lag per assigned partition."""
        assigned = set(self._consumer.assignment())
        self._forget(self._reported - assigned)
        if not assigned:
            return {}
        try:
            partitions = sorted(assigned)
            ends = await self._consumer.end_offsets(partitions)
            committed = {tp: await self._consumer.committed(tp) for tp in partitions}
            starts = await self._consumer.beginning_offsets(partitions)
        except (KafkaError, AssertionError, OSError) as e:
            # AssertionError: aiokafka asserts a partition is still assigned (a rebalance raced).
            log.warning("consumer lag not updated", group=self._group, error=repr(e))
            return {}
        lags = consumer_lag(ends, committed, starts)
        for tp, lag in lags.items():
            labels = (self._group, tp.topic, str(tp.partition))
            CONSUMER_LAG.labels(*labels).set(lag)
            lost = lost_to_retention(committed.get(tp), starts.get(tp, 0))
            RECORDS_LOST_TO_RETENTION.labels(*labels).set(lost)
            if lost:
                log.error(
                    "records deleted by retention before this group processed them; "
                    "replay the upstream stage (tickpipe replay) to recover them",
                    group=self._group,
                    topic=tp.topic,
                    partition=tp.partition,
                    committed=committed.get(tp),
                    log_start=starts.get(tp),
                    lost=lost,
                )
        self._reported |= set(lags)
        return lags

    def _forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            for gauge in (CONSUMER_LAG, RECORDS_LOST_TO_RETENTION):
                try:
                    gauge.remove(self._group, tp.topic, str(tp.partition))
                except KeyError:
                    pass
            self._reported.discard(tp)
