"""The download pipeline against the real Kafka: a dead host holds up nobody, and the commit
stops at its unit until it is done.

Scratch topics (``pl<run>.fetch-units``, ``pl<run>.raw-payloads``, 1 partition) and a consumer
group of their own; the :class:`~tickpipe_fetcher.downloader.Downloader` runs over a fake
transport (no HTTP): host ``dead.test`` never answers until released, ``fast.test`` at once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from tickpipe_fetcher.downloader import Downloader
from tickpipe_fetcher.http import HttpResponse, RetryableFetchError
from tickpipe_fetcher.pipeline import PipelineRunner
from tickpipe_fetcher.sources.base import Answer, Requests
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.records import OutRecord
from tickpipe_shared.kafka.topics import FETCH_UNITS, RAW_PAYLOADS
from tickpipe_shared.metrics import Health
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.fetch_units import FetchUnit

pytestmark = pytest.mark.integration

HOUR = 3_600_000
T0 = int(datetime(2019, 2, 4, tzinfo=UTC).timestamp() * 1000)


class UrlSource:
    def __init__(self, name: str, host: str) -> None:
        self.name, self.host = name, host

    async def fetch(self, unit: FetchUnit, now_ms: int, requests: Requests) -> Answer:
        url = f"http://{self.host}/{unit.unit.start_ms}"
        response = await requests.get(url)
        if response.status != 200:
            raise RetryableFetchError(f"HTTP {response.status} from {url}")
        return Answer(response.body, False, url, 200, "", "test", 1)

    async def close(self) -> None:
        """Nothing held."""


@dataclass
class Transport:
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def get(self, url: str, headers: Mapping[str, str] | None = None) -> HttpResponse:
        if "dead.test" in url:
            await self.release.wait()
        return HttpResponse(200, url.encode())


@pytest.fixture
async def settings(infra: Settings) -> AsyncIterator[Settings]:
    s = infra.model_copy(update={"topic_prefix": f"pl{uuid.uuid4().hex[:8]}.",
                                 "fetch_rate_per_host": 0.0})  # fmt: skip
    names = [s.topic(FETCH_UNITS), s.topic(RAW_PAYLOADS)]
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, 1, 1) for n in names])
        yield s
        await admin.delete_topics(names)
    finally:
        await admin.close()


async def committed(s: Settings, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return next((m.offset for tp, m in offsets.items() if tp.topic == s.topic(FETCH_UNITS)), -1)


async def produced(s: Settings) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(s.topic(RAW_PAYLOADS), 0)
        return (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()


async def eventually(check: Any, want: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while (got := await check()) != want:
        assert time.monotonic() < deadline, f"still {got}, expected {want}"
        await asyncio.sleep(0.2)


async def test_dead_host_holds_up_nobody_and_the_commit_waits_for_it(settings: Settings) -> None:
    s = settings
    transport = Transport()
    sources = {"dead": UrlSource("dead", "dead.test"), "fast": UrlSource("fast", "fast.test")}

    def failure(record: Any, error: BaseException, attempts: int) -> OutRecord:
        raise AssertionError(f"no unit may fail here: {error}")

    d = Downloader(s, sources, transport, failure)  # type: ignore[arg-type]
    group = f"{s.topic_prefix}fetcher"
    runner = PipelineRunner(s, "fetcher", FETCH_UNITS, d.download, Health(), group=group,
                            capacity=32, commit_interval_s=0.2)  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(12):
            source = "dead" if i == 3 else "fast"
            unit = FetchUnit("r", Unit(source, "X", "ticks", T0 + i * HOUR, T0 + (i + 1) * HOUR),
                             "X", -1)  # fmt: skip
            await producer.send_and_wait(s.topic(FETCH_UNITS), unit.to_json(), key=b"k")
    finally:
        await producer.stop()
    task = asyncio.create_task(runner.run())
    try:
        await eventually(lambda: produced(s), 11)  # every fast unit, past the dead one
        await eventually(lambda: committed(s, group), 3)  # offset 3 (dead) is unfinished
        await asyncio.sleep(1.0)
        assert await committed(s, group) == 3
        transport.release.set()
        await eventually(lambda: produced(s), 12)
        await eventually(lambda: committed(s, group), 12)
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)
