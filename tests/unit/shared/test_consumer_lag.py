"""``tickpipe_shared.kafka.lag``: the lag arithmetic and the gauges a member reports."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from prometheus_client import REGISTRY
from structlog.testing import capture_logs
from tickpipe_shared.kafka.lag import LagMonitor, consumer_lag, lost_to_retention, partition_lag

TOPIC = "lagtest.validated-batches"
GROUP = "lagtest-writer"


def _gauge(partition: int, name: str = "tickpipe_consumer_lag") -> float | None:
    return REGISTRY.get_sample_value(
        name, {"group": GROUP, "topic": TOPIC, "partition": str(partition)}
    )


LOST = "tickpipe_consumer_records_lost_to_retention"


@pytest.mark.parametrize(
    ("end", "committed", "start", "lag"),
    [
        (100, 40, 0, 60),  # the usual case
        (100, 100, 0, 0),  # caught up
        (100, None, 0, 100),  # never committed: the whole log (auto_offset_reset=earliest)
        (100, None, 70, 30),  # never committed, log truncated by retention
        (100, 10, 70, 30),  # committed offset deleted by retention: resumes at the log start
        (5, 100, 0, 0),  # topic re-created under the group: no negative lag
    ],
)
def test_partition_lag(end: int, committed: int | None, start: int, lag: int) -> None:
    assert partition_lag(end, committed, start) == lag


def test_consumer_lag_per_partition() -> None:
    a, b = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
    assert consumer_lag({a: 10, b: 7}, {a: 4}, {b: 2}) == {a: 6, b: 5}


class FakeConsumer:
    def __init__(self) -> None:
        self.assigned = {TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)}
        self.ends = {TopicPartition(TOPIC, 0): 50, TopicPartition(TOPIC, 1): 9}
        self.commits: dict[TopicPartition, int | None] = {TopicPartition(TOPIC, 0): 20}
        self.error: BaseException | None = None

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self.error is not None:
            raise self.error
        return {tp: self.ends[tp] for tp in tps}

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.commits.get(tp)

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 4 for tp in tps}


async def test_monitor_sets_removes_and_survives_errors() -> None:
    consumer = FakeConsumer()
    monitor = LagMonitor(consumer, GROUP, interval_s=0.01)
    assert await monitor.update() == {TopicPartition(TOPIC, 0): 30, TopicPartition(TOPIC, 1): 5}
    assert (_gauge(0), _gauge(1)) == (30, 5)

    # A rebalance took partition 1 away: its series goes (the new owner reports it).
    consumer.assigned.discard(TopicPartition(TOPIC, 1))
    consumer.ends[TopicPartition(TOPIC, 0)] = 80
    await monitor.update()
    assert (_gauge(0), _gauge(1)) == (60, None)

    # The broker is unreachable: the last value stays, nothing raises.
    consumer.error = KafkaConnectionError()
    assert await monitor.update() == {}
    assert _gauge(0) == 60

    # Stopping removes this member's series.
    consumer.error = None
    stopping = asyncio.Event()
    task = asyncio.create_task(monitor.run(stopping))
    await asyncio.sleep(0.05)
    stopping.set()
    await task
    assert _gauge(0) is None


@pytest.mark.parametrize(
    ("committed", "start", "lost"),
    [(40, 0, 0), (40, 40, 0), (None, 70, 0), (10, 70, 60), (100, 70, 0)],
)
def test_lost_to_retention(committed: int | None, start: int, lost: int) -> None:
    assert lost_to_retention(committed, start) == lost


async def test_monitor_reports_records_retention_deleted_before_the_commit() -> None:
    """The writer more than a batch topic's retention behind: records it never committed are
    gone. The lag counts only what is left; the loss has its own gauge and an error line."""
    consumer = FakeConsumer()
    consumer.commits[TopicPartition(TOPIC, 1)] = 2  # log starts at 4: offsets 2 and 3 deleted
    monitor = LagMonitor(consumer, GROUP, interval_s=0.01)
    with capture_logs() as logs:
        assert await monitor.update() == {
            TopicPartition(TOPIC, 0): 30,
            TopicPartition(TOPIC, 1): 5,
        }
    assert (_gauge(0, LOST), _gauge(1, LOST)) == (0, 2)
    (error,) = [e for e in logs if e["log_level"] == "error"]
    assert (error["partition"], error["committed"], error["log_start"], error["lost"]) == (
        1, 2, 4, 2)  # fmt: skip
    assert "tickpipe replay" in error["event"]
    consumer.commits[TopicPartition(TOPIC, 1)] = 9  # replayed and caught up
    await monitor.update()
    assert _gauge(1, LOST) == 0
    consumer.assigned.clear()
    await monitor.update()
    assert _gauge(1, LOST) is None  # the partition's new owner reports it
