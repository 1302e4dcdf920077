"""Publishing fetch requests and following them to completion.

``--wait`` reads the tracker's ``request-events`` topic (``docs/topics/request-events.md``):
progress snapshots and one ``completed`` (units stored, empty, failed; ticks; failure reasons) or
``rejected`` event per request. Any other system can wait for a request the same way.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer
from rich.console import Console
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.producer import make_producer, produce_all
from tickpipe_shared.kafka.records import OutRecord
from tickpipe_shared.kafka.security import kafka_client_kwargs
from tickpipe_shared.kafka.topics import FETCH_REQUESTS, REQUEST_EVENTS
from tickpipe_shared.units import dt_to_ms
from tickpipe_shared.wire.headers import encode_headers
from tickpipe_shared.wire.requests import FetchRequest


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


#: Request events are searched from this long before the request's ``requested_at``: the
#: tracker's clock (record timestamps) may be behind ours. Events are matched by request id, so
#: reading a little more costs nothing.
CLOCK_SKEW_MS = 5 * 60 * 1000
#: Failure reasons printed at the end.
SHOWN_FAILURES = 5


@dataclass(slots=True)
class WaitResult:
    """How a request ended, from the tracker's request events (``request-events``).

    ``expected`` is the planned unit count (``None`` until the tracker knows it); ``finished``
    is set by a ``completed`` or ``rejected`` event, ``rejected`` holds the reason of the latter.
    """

    expected: int | None = None
    stored: int = 0
    empty: int = 0
    suspect_empty: int = 0
    failed: int = 0
    skipped: int = 0
    ticks: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    rejected: str | None = None
    events: int = 0
    #: What the ``ticks`` count counts: ``ticks``, or ``candles`` for a candle request.
    rows_name: str = "ticks"

    @property
    def complete(self) -> bool:
        """The tracker reported the request completed: every unit stored, empty or failed."""
        return self.finished and self.rejected is None

    def line(self) -> str:
        """The progress line: ``12 stored, 1 empty, 0 failed of 48 units, 60311 ticks``, with
        suspect-empty and skipped units when there are any, and ``candles`` for a candle
        request (the tracker's ``ticks`` counts rows)."""
        units = "?" if self.expected is None else str(self.expected)
        suspect = f", {self.suspect_empty} suspect-empty" if self.suspect_empty else ""
        skipped = f" ({self.skipped} already stored, skipped)" if self.skipped else ""
        return (
            f"{self.stored} stored, {self.empty} empty{suspect}, {self.failed} failed of "
            f"{units} units{skipped}, {self.ticks} {self.rows_name}"
        )

    def apply(self, event: dict[str, Any]) -> bool:
        """Fold one request event in; True when it changed what the progress line shows or
        finished the request. Unknown events are ignored (newer trackers may add some)."""
        kind = event.get("event")
        if self.finished or kind not in ("progress", "completed", "rejected"):
            return False
        self.events += 1
        if kind == "rejected":
            self.finished = True
            self.rejected = str(event.get("reason", "rejected"))
            self.failures = [
                {"stage": "fetcher-planner", "error_class": event.get("error_class", ""),
                 "reason": self.rejected}
            ]  # fmt: skip
            return True
        before = self.line()
        units = event.get("units")
        self.expected = units if isinstance(units, int) else self.expected
        for name in ("stored", "empty", "suspect_empty", "failed", "skipped", "ticks"):
            value = event.get(name)
            if isinstance(value, int):
                setattr(self, name, value)
        if kind == "completed":
            self.finished = True
            found = event.get("failures")
            self.failures = [f for f in found if isinstance(f, dict)] if found else []
            return True
        return self.line() != before


def _decode(value: bytes | None) -> dict[str, Any] | None:
    try:
        data = json.loads(value or b"")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


async def _seek_to_request(consumer: AIOKafkaConsumer, since_ms: int) -> None:
    """Position every assigned partition at the first record at or after ``since_ms``.

    The end offsets are read first, as concrete numbers, so an event produced while we look is
    never skipped (``seek_to_end`` would resolve "the end" later, past it).
    """
    parts = list(consumer.assignment())
    ends = await consumer.end_offsets(parts)
    since = await consumer.offsets_for_times({tp: since_ms for tp in parts})
    for tp in parts:
        found = since.get(tp)
        consumer.seek(tp, found.offset if found is not None else ends[tp])


async def wait(
    settings: Settings, request: FetchRequest, timeout_s: float, console: Console
) -> WaitResult:
    """Follow ``request`` on the ``request-events`` topic (published by the tracker) until its
    ``completed`` or ``rejected`` event; print a line per progress step, then the summary and
    the reasons of failed units. Gives up after ``timeout_s`` seconds.

    Raises :class:`aiokafka.errors.KafkaError` when Kafka cannot be reached.
    """
    result = WaitResult(rows_name="candles" if request.kind == "candles" else "ticks")
    key = request.request_id.encode()
    # Without a group id the consumer is assigned every partition of the topic at start.
    consumer = AIOKafkaConsumer(
        settings.topic(REQUEST_EVENTS),
        **kafka_client_kwargs(settings),
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        await _seek_to_request(consumer, dt_to_ms(request.requested_at) - CLOCK_SKEW_MS)
        deadline = time.monotonic() + timeout_s
        while not result.finished and time.monotonic() < deadline:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            batches = await consumer.getmany(timeout_ms=max(1, min(500, remaining_ms)))
            for records in batches.values():
                for r in records:
                    event = _decode(r.value) if r.key == key else None
                    if event is None or event.get("request_id") != request.request_id:
                        continue
                    if result.apply(event) and not result.finished:
                        console.print(f"  {datetime.now():%H:%M:%S} {result.line()}")
                    if result.finished:
                        break
                if result.finished:
                    break
        _report(result, request, timeout_s, console)
        return result
    finally:
        await consumer.stop()


def _report(result: WaitResult, request: FetchRequest, timeout_s: float, console: Console) -> None:
    if result.rejected is not None:
        console.print(f"  [red]rejected[/red]: {result.rejected}")
        return
    if result.complete:
        colour = "red" if result.failed else "green"
        console.print(f"  {datetime.now():%H:%M:%S} [{colour}]done[/{colour}]: {result.line()}")
        shown = result.failures[:SHOWN_FAILURES]
        for f in shown:
            console.print(
                f"  [red]failed[/red] {f.get('unit_key', '')} ({f.get('stage')}): {f.get('reason')}"
            )
        if result.failed > len(shown):
            console.print(f"  … and {result.failed - len(shown)} more failed units")
        return
    if result.events == 0:
        console.print(
            f"  [yellow]timed out after {timeout_s:.0f} s without any event about request "
            f"{request.request_id}[/yellow]: the tracker (tickpipe-tracker, which publishes "
            "request-events) may not be running — check `uv run tickpipe-stack status`; the "
            "request itself is published and will still be processed"
        )
    else:
        console.print(
            f"  [yellow]timed out after {timeout_s:.0f} s[/yellow] at {result.line()}: the "
            "request is still being processed (or the tracker stopped — check "
            "`uv run tickpipe-stack status`)"
        )
