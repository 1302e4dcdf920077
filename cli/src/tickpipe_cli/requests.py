"""Publishing fetch requests and waiting for their units to land."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaConsumer
from rich.console import Console
from tickpipe_shared.config import Settings
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.kafka.producer import make_producer, produce_all
from tickpipe_shared.kafka.records import OutRecord
from tickpipe_shared.kafka.topics import FAILURES, FETCH_REQUESTS
from tickpipe_shared.units import dt_to_ms, hour_units
from tickpipe_shared.wire.failures import Failure
from tickpipe_shared.wire.headers import encode_headers
from tickpipe_shared.wire.requests import FetchRequest

from tickpipe_cli.db import connect


async def publish(settings: Settings, request: FetchRequest) -> None:
    """Publish ``request`` on the fetch-requests topic, keyed by instrument.

    Raises :class:`aiokafka.errors.KafkaError` when Kafka cannot be reached.
    """
    producer = make_producer(settings, client_id="tickpipe-cli")
    await producer.start()
    try:
        await produce_all(
            producer,
            [
                OutRecord(
                    settings.topic(FETCH_REQUESTS),
                    request.instrument.encode(),
                    request.to_json(),
                    encode_headers({"request_id": request.request_id}),
                )
            ],
        )
    finally:
        await producer.stop()


@dataclass(slots=True)
class WaitResult:
    """How a request ended: units stored (with data), empty, failed, and whether all arrived."""

    expected: int
    stored: int = 0
    empty: int = 0
    failed: int = 0
    failures: list[Failure] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every expected unit is accounted for."""
        return self.stored + self.empty + self.failed >= self.expected


async def _failures_since(consumer: AIOKafkaConsumer, request_id: str, into: list[Failure]) -> None:
    batches = await consumer.getmany(timeout_ms=200)
    for records in batches.values():
        for r in records:
            try:
                f = Failure.from_json(r.value or b"")
            except ValueError:
                continue
            if f.request_id == request_id:
                into.append(f)


async def wait(
    settings: Settings, request: FetchRequest, timeout_s: float, console: Console
) -> WaitResult:
    """Wait until every unit of ``request`` is in the ingest log (written by this request) or
    in the failures topic; print progress and the failures' reasons.

    A request the fetcher rejects as a whole (e.g. an unknown instrument) ends at its first
    failure record. Gives up after ``timeout_s`` seconds.
    """
    units = hour_units(
        request.source, request.instrument, dt_to_ms(request.from_), dt_to_ms(request.to)
    )
    result = WaitResult(expected=len(units))
    topic = settings.topic(FAILURES)
    # Without a group id the consumer is assigned every partition of the topic at start.
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    conn = await connect(settings)
    try:
        await migrate(conn)  # the writer may not have created the schema yet
        parts = list(consumer.assignment())
        # Failures published before the request cannot be about it: start at the request time.
        # The end offsets are read first, as concrete numbers, so a failure produced while we
        # look is never skipped (seek_to_end would resolve "the end" later, past it).
        ends = await consumer.end_offsets(parts)
        since = await consumer.offsets_for_times(
            {tp: dt_to_ms(request.requested_at) for tp in parts}
        )
        for tp in parts:
            found = since.get(tp)
            consumer.seek(tp, found.offset if found is not None else ends[tp])
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            await _failures_since(consumer, request.request_id, result.failures)
            rows = await conn.fetch(
                """SELECT state, count(*) AS n FROM ingest_log
                   WHERE request_id = $1 GROUP BY state""",
                request.request_id,
            )
            counts = {r["state"]: r["n"] for r in rows}
            result.stored, result.empty = counts.get("stored", 0), counts.get("empty", 0)
            unit_failures = {f.unit_key for f in result.failures}
            result.failed = len(unit_failures)
            whole_request_rejected = any(f.stage == "fetcher-planner" for f in result.failures)
            line = (
                f"{result.stored} stored, {result.empty} empty, {result.failed} failed "
                f"of {result.expected} units"
            )
            if line != last:
                console.print(f"  {datetime.now():%H:%M:%S} {line}")
                last = line
            if result.complete or whole_request_rejected:
                break
            await asyncio.sleep(0.5)
        for f in result.failures:
            console.print(f"  [red]failed[/red] ({f.stage}): {f.reason}")
        if not result.complete and not result.failures:
            console.print(f"  [yellow]timed out after {timeout_s:.0f} s[/yellow]")
        return result
    finally:
        await conn.close()
        await consumer.stop()
