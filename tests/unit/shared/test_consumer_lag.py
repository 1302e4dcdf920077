"""``tickpipe_shared.kafka.lag``: the lag arithmetic and the gauges a member reports."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from prometheus_client import REGISTRY
from tickpipe_shared.kafka.lag import LagMonitor, consumer_lag, partition_lag

TOPIC = "lagtest.validated-batches"
GROUP = "lagtest-writer"


def _gauge(partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "tickpipe_consumer_lag", {"group": GROUP, "topic": TOPIC, "partition": str(partition)}
    )


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
