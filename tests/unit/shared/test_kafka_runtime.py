"""``tickpipe_shared.kafka.runtime``: the commit protocol, with fake consumer and producer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaConnectionError
from prometheus_client import REGISTRY
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka import runtime
from tickpipe_shared.kafka.records import OutRecord, RetryableError
from tickpipe_shared.kafka.runtime import BatchPolicy, StageRunner
from tickpipe_shared.metrics import Health

IN = "tickpipe.decoded-batches"
OUT = "tickpipe.validated-batches"
FAILURES = "tickpipe.failures"


@dataclass
class Rec:
    partition: int
    offset: int
    value: bytes | None = b"ok"
    key: bytes | None = b"unit-key"
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    topic: str = IN


class FakeConsumer:
    def __init__(self, events: list[tuple[str, Any]], assigned: Sequence[int] = (0, 1, 2)) -> None:
        self.events = events
        self.assigned = {TopicPartition(IN, p) for p in assigned}
        self.commit_error: BaseException | None = None
        self.batches: list[dict[TopicPartition, list[Rec]]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.events.append(("seek", (tp, offset)))

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.commit_error is not None:
            raise self.commit_error
        self.events.append(("commit", dict(offsets)))

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Rec]]:
        return self.batches.pop(0) if self.batches else {}


class EchoProcessor:
    """One output per input; raises for values listed in ``poison``."""

    def __init__(self, poison: Sequence[bytes] = (), error: BaseException | None = None) -> None:
        self.poison = set(poison)
        self.error = error
        self.calls: list[list[int]] = []

    async def process(self, records: Sequence[Any]) -> list[OutRecord]:
        self.calls.append([r.offset for r in records])
        if self.error is not None:
            raise self.error
        for r in records:
            if r.value in self.poison:
                raise ValueError(f"cannot handle {r.value!r}")
        return [OutRecord(OUT, r.key, b"out-" + (r.value or b""), []) for r in records]


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    log: list[tuple[str, Any]] = []

    async def fake_produce_all(producer: Any, records: Sequence[OutRecord]) -> None:
        log.append(("produce", list(records)))

    monkeypatch.setattr(runtime, "produce_all", fake_produce_all)
    monkeypatch.setattr(runtime, "make_producer", lambda settings, client_id: object())
    monkeypatch.setattr(runtime.random, "uniform", lambda a, b: 0.0)  # no backoff wait
    return log


def runner(processor: Any, stage: str) -> StageRunner:
    return StageRunner(Settings(), stage, "decoded-batches", processor, Health())


def commits(stage: str) -> float:
    return REGISTRY.get_sample_value("tickpipe_commits_total", {"stage": stage}) or 0.0


def test_runner_topics_and_group(events: list[Any]) -> None:
    r = StageRunner(
        Settings(topic_prefix="x.", consumer_group_prefix="g-"),
        "validator",
        "decoded-batches",
        EchoProcessor(),
        Health(),
    )
    assert (r.input_topic, r.failures_topic, r.group) == (
        "x.decoded-batches",
        "x.failures",
        "g-validator",
    )


async def test_outputs_produced_before_commit_and_offsets_plus_one(events: list[Any]) -> None:
    stage = "rt-ok"
    before = commits(stage)
    consumer = FakeConsumer(events)
    records = [Rec(0, 10), Rec(1, 5), Rec(0, 11), Rec(1, 6), Rec(2, 0)]
    await runner(EchoProcessor(), stage).checkpoint(consumer, records)  # type: ignore[arg-type]
    assert [e[0] for e in events] == ["produce", "commit"]
    produced = events[0][1]
    assert [o.topic for o in produced] == [OUT] * 5
    assert [o.value for o in produced] == [b"out-ok"] * 5
    assert events[1][1] == {
        TopicPartition(IN, 0): 12,
        TopicPartition(IN, 1): 7,
        TopicPartition(IN, 2): 1,
    }
    assert commits(stage) == before + 1


@pytest.mark.parametrize(
    "error",
    [RetryableError("database down"), KafkaConnectionError("broker gone")],
    ids=["retryable", "kafka"],
)
async def test_retryable_error_rewinds_without_commit(
    events: list[Any], error: BaseException
) -> None:
    consumer = FakeConsumer(events, assigned=(0, 1))
    records = [Rec(0, 10), Rec(1, 5), Rec(0, 11), Rec(2, 3), Rec(1, 6)]
    proc = EchoProcessor(error=error)
    r = runner(proc, "rt-retry")
    await r.checkpoint(consumer, records)  # type: ignore[arg-type]
    # Seek to the first offset of each *assigned* partition; no produce, no commit.
    assert events == [
        ("seek", (TopicPartition(IN, 0), 10)),
        ("seek", (TopicPartition(IN, 1), 5)),
    ]
    assert proc.calls == [[10, 5, 11, 3, 6]]  # not isolated record by record
    assert r._retry_delay == 0.5
    await r.checkpoint(consumer, records)  # type: ignore[arg-type]
    assert r._retry_delay == 1.0  # exponential backoff


async def test_kafka_error_while_producing_rewinds(
    events: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing_produce(producer: Any, records: Sequence[OutRecord]) -> None:
        events.append(("produce", list(records)))
        raise KafkaConnectionError("ack timeout")

    monkeypatch.setattr(runtime, "produce_all", failing_produce)
    consumer = FakeConsumer(events)
    await runner(EchoProcessor(), "rt-produce").checkpoint(  # type: ignore[arg-type]
        consumer, [Rec(2, 40), Rec(2, 41)]
    )
    assert [e[0] for e in events] == ["produce", "seek"]
    assert events[1][1] == (TopicPartition(IN, 2), 40)


async def test_successful_checkpoint_resets_backoff(events: list[Any]) -> None:
    consumer = FakeConsumer(events)
    proc = EchoProcessor(error=RetryableError("down"))
    r = runner(proc, "rt-reset")
    await r.checkpoint(consumer, [Rec(0, 1)])  # type: ignore[arg-type]
    assert r._retry_delay == 0.5
    proc.error = None
    await r.checkpoint(consumer, [Rec(0, 1)])  # type: ignore[arg-type]
    assert r._retry_delay == 0.0
    assert events[-1] == ("commit", {TopicPartition(IN, 0): 2})


async def test_poison_record_becomes_failure_and_others_go_through(events: list[Any]) -> None:
    consumer = FakeConsumer(events)
    records = [
        Rec(0, 7, b"a"),
        Rec(0, 8, b"bad", key=b"k-bad", headers=[("tp-request_id", b"req-9"), ("x", b"y")]),
        Rec(1, 3, b"c"),
    ]
    proc = EchoProcessor(poison=[b"bad"])
    await runner(proc, "validator").checkpoint(consumer, records)  # type: ignore[arg-type]
    assert proc.calls == [[7, 8, 3], [7], [8], [3]]
    assert [e[0] for e in events] == ["produce", "commit"]
    produced = events[0][1]
    assert [o.topic for o in produced] == [OUT, FAILURES, OUT]
    assert produced[0].value == b"out-a" and produced[2].value == b"out-c"
    failure = produced[1]
    assert failure.key == b"k-bad"
    data = json.loads(failure.value)
    assert data["stage"] == "validator"
    assert data["reason"] == "cannot handle b'bad'"
    assert data["error_class"] == "ValueError"
    assert (data["topic"], data["partition"], data["offset"]) == (IN, 0, 8)
    assert data["key"] == data["unit_key"] == "k-bad"
    assert data["request_id"] == "req-9"
    assert data["headers"] == {"request_id": "req-9"}
    assert data["attempt"] == 1
    assert events[1][1] == {TopicPartition(IN, 0): 9, TopicPartition(IN, 1): 4}


async def test_single_record_poison_and_empty_message(events: list[Any]) -> None:
    consumer = FakeConsumer(events)
    proc = EchoProcessor(error=KeyError())
    await runner(proc, "rt-single").checkpoint(consumer, [Rec(0, 0, key=None)])  # type: ignore[arg-type]
    [failure] = events[0][1]
    data = json.loads(failure.value)
    assert failure.topic == FAILURES and failure.key is None
    assert data["error_class"] == "KeyError"
    assert data["reason"] == "KeyError()"  # str() is empty: repr() instead
    assert data["key"] is None
    assert events[1] == ("commit", {TopicPartition(IN, 0): 1})


async def test_retryable_inside_isolation_still_rewinds(events: list[Any]) -> None:
    class Proc:
        async def process(self, records: Sequence[Any]) -> list[OutRecord]:
            if len(records) > 1:
                raise ValueError("batch fails")
            if records[0].offset == 2:
                raise RetryableError("db down meanwhile")
            return []

    consumer = FakeConsumer(events)
    await runner(Proc(), "rt-iso").checkpoint(  # type: ignore[arg-type]
        consumer, [Rec(0, 1), Rec(0, 2)]
    )
    assert events == [("seek", (TopicPartition(IN, 0), 1))]


@pytest.mark.parametrize(
    "error", [CommitFailedError("rebalanced"), KafkaConnectionError("x")], ids=["commit", "kafka"]
)
async def test_commit_failure_does_not_raise(events: list[Any], error: BaseException) -> None:
    stage = f"rt-commitfail-{type(error).__name__}"
    before = commits(stage)
    consumer = FakeConsumer(events)
    consumer.commit_error = error
    await runner(EchoProcessor(), stage).checkpoint(consumer, [Rec(0, 1)])  # type: ignore[arg-type]
    assert [e[0] for e in events] == ["produce"]
    assert commits(stage) == before


async def test_failure_record_explicit_request_id_and_attempts(events: list[Any]) -> None:
    r = runner(EchoProcessor(), "fetcher")
    out = r.failures.record(
        Rec(3, 99, key=b"k", headers=[("tp-request_id", b"from-header")]),
        RuntimeError("gave up after 5 attempts; token=abc"),
        attempt=5,
        request_id="explicit",
    )
    data = json.loads(out.value)
    assert data["attempt"] == 5
    assert data["request_id"] == "explicit"
    assert data["reason"] == "gave up after 5 attempts; token=abc"
    assert out.topic == FAILURES


async def test_poll_gathers_until_wait_expires(events: list[Any]) -> None:
    consumer = FakeConsumer(events)
    tp0, tp1 = TopicPartition(IN, 0), TopicPartition(IN, 1)
    consumer.batches = [{tp0: [Rec(0, 1), Rec(0, 2)]}, {tp1: [Rec(1, 9)]}]
    r = StageRunner(
        Settings(),
        "rt-poll",
        "decoded-batches",
        EchoProcessor(),
        Health(),
        policy=BatchPolicy(max_records=10, max_wait_s=0.02),
    )
    got = await r._poll(consumer)  # type: ignore[arg-type]
    assert [(x.partition, x.offset) for x in got] == [(0, 1), (0, 2), (1, 9)]


async def test_poll_stops_at_max_records(events: list[Any]) -> None:
    consumer = FakeConsumer(events)
    tp0 = TopicPartition(IN, 0)
    consumer.batches = [{tp0: [Rec(0, i) for i in range(3)]}, {tp0: [Rec(0, 3)]}]
    r = StageRunner(
        Settings(),
        "rt-poll2",
        "decoded-batches",
        EchoProcessor(),
        Health(),
        policy=BatchPolicy(max_records=3, max_wait_s=5),
    )
    got = await r._poll(consumer)  # type: ignore[arg-type]
    assert len(got) == 3 and len(consumer.batches) == 1


async def test_poll_idle_returns_nothing(events: list[Any]) -> None:
    r = runner(EchoProcessor(), "rt-idle")
    assert await r._poll(FakeConsumer(events)) == []  # type: ignore[arg-type]
