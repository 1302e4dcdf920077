"""Publishing fetch requests and following them to completion.

``--wait`` reads the tracker's ``request-events`` topic (``docs/topics/request-events.md``):
progress snapshots and one ``completed`` (units stored, empty, failed; ticks; failure reasons) or
``rejected`` event per request. Any other system can wait for a request the same way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.markup import escape
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.follow import groupless_consumer, seek_to_time
from tickpipe_shared.kafka.producer import make_producer, produce_all
from tickpipe_shared.kafka.records import OutRecord
from tickpipe_shared.kafka.topics import FETCH_REQUESTS, REQUEST_CANCELLATIONS, REQUEST_EVENTS
from tickpipe_shared.units import dt_to_ms
from tickpipe_shared.wire.headers import encode_headers
from tickpipe_shared.wire.request_events import decode_cancellation, encode_cancellation, fold
from tickpipe_shared.wire.requests import FetchRequest

from tickpipe_cli.progress import JsonDisplay, PlainDisplay


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
    cancelled: int = 0
    skipped: int = 0
    ticks: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    #: The ``completed`` or ``rejected`` event itself (``--json`` prints it).
    final_event: dict[str, Any] | None = None
    finished: bool = False
    rejected: str | None = None
    events: int = 0
    #: What the ``ticks`` count counts: ``ticks``, or ``candles`` for a candle request.
    rows_name: str = "ticks"

    @property
    def done(self) -> int:
        """Units accounted for: stored, empty, suspect-empty, failed or cancelled."""
        return self.stored + self.empty + self.suspect_empty + self.failed + self.cancelled

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
        suspect += f", {self.cancelled} cancelled" if self.cancelled else ""
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
        if kind in ("rejected", "completed"):
            self.final_event = event
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
        for name in ("stored", "empty", "suspect_empty", "failed", "cancelled", "skipped", "ticks"):
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


async def wait(
    settings: Settings, request: FetchRequest, timeout_s: float, display: PlainDisplay
) -> WaitResult:
    """Follow ``request`` on the ``request-events`` topic (published by the tracker) until its
    ``completed`` or ``rejected`` event; show each progress step on ``display``, then the
    summary and the reasons of failed units. Gives up after ``timeout_s`` seconds.

    Raises :class:`aiokafka.errors.KafkaError` when Kafka cannot be reached.
    """
    result = WaitResult(rows_name="candles" if request.kind == "candles" else "ticks")
    key = request.request_id.encode()
    # Without a group id the consumer is assigned every partition of the topic at start.
    consumer = groupless_consumer(settings, REQUEST_EVENTS)
    await consumer.start()
    try:
        await seek_to_time(consumer, dt_to_ms(request.requested_at) - CLOCK_SKEW_MS)
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
                        display.update(result)
                    if result.finished:
                        break
                if result.finished:
                    break
        display.finish()
        _report(result, request, timeout_s, display.final)
        if isinstance(display, JsonDisplay):
            display.event(result.final_event)
        return result
    finally:
        await consumer.stop()


def _report(
    result: WaitResult, request: FetchRequest, timeout_s: float, show: Callable[[str], None]
) -> None:
    if result.rejected is not None:
        show(f"  [red]rejected[/red]: {escape(result.rejected)}")
        return
    if result.complete:
        colour = "red" if result.failed else "yellow" if result.cancelled else "green"
        show(f"  {datetime.now():%H:%M:%S} [{colour}]done[/{colour}]: {result.line()}")
        shown = result.failures[:SHOWN_FAILURES]
        for f in shown:
            show(
                f"  [red]failed[/red] {escape(str(f.get('unit_key', '')))} ({f.get('stage')}): "
                f"{escape(str(f.get('reason')))}"
            )
        if result.failed > len(shown):
            show(f"  … and {result.failed - len(shown)} more failed units")
        return
    if result.events == 0:
        show(
            f"  [yellow]timed out after {timeout_s:.0f} s without any event about request "
            f"{request.request_id}[/yellow]: the tracker (tickpipe-tracker, which publishes "
            "request-events) may not be running — check `uv run tickpipe-stack status`; the "
            "request itself is published and will still be processed"
        )
    else:
        show(
            f"  [yellow]timed out after {timeout_s:.0f} s[/yellow] at {result.line()}: the "
            "request is still being processed (or the tracker stopped — check "
            "`uv run tickpipe-stack status`)"
        )


# --- exit codes ---------------------------------------------------------------------------------

#: Exit codes of ``tickpipe request`` (documented in ``docs/cli.md``).
EXIT_OK = 0  # every unit stored or empty (or nothing to do)
EXIT_FAILED = 1  # some units failed
EXIT_INVALID = 2  # the request is invalid: refused by the CLI or rejected by the planner
EXIT_TIMEOUT = 3  # --wait gave up before the request completed
EXIT_UNREACHABLE = 4  # Kafka (or, for --dry-run, the database or instrument metadata) unreachable
EXIT_CANCELLED = 5  # the request was cancelled: some units were not downloaded


def exit_code(result: WaitResult) -> int:
    """The exit code of a waited request (see the ``EXIT_*`` constants)."""
    if result.rejected is not None:
        return EXIT_INVALID
    if not result.complete:
        return EXIT_TIMEOUT
    if result.failed:
        return EXIT_FAILED
    if result.cancelled:
        return EXIT_CANCELLED
    return EXIT_OK


# --- requests list / show / cancel ---------------------------------------------------------------


async def read_topic(settings: Settings, topic: str, since_ms: int) -> list[Any]:
    """Every record of logical ``topic`` from ``since_ms`` to the end as it is now (all
    partitions, no consumer group). Raises :class:`aiokafka.errors.KafkaError`."""
    consumer = groupless_consumer(settings, topic)
    await consumer.start()
    try:
        parts = list(consumer.assignment())
        ends = await consumer.end_offsets(parts)
        await seek_to_time(consumer, since_ms)
        out: list[Any] = []
        pending = {tp for tp in parts if await consumer.position(tp) < ends[tp]}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batches.items():
                out += [r for r in records if r.offset < ends[tp]]
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
        return out
    finally:
        await consumer.stop()


@dataclass(slots=True)
class RequestView:
    """A request as ``requests list|show`` shows it: what was asked (from ``fetch-requests``,
    ``None`` when it is older than the look-back) and its latest state (from
    ``request-events``: ``{"status": "published"}`` before the tracker said anything)."""

    request_id: str
    request: dict[str, Any] | None
    state: dict[str, Any]
    cancelled: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"request_id": self.request_id, "request": self.request, "state": self.state,
                "cancel_requested": self.cancelled}  # fmt: skip


async def request_views(settings: Settings, since_ms: int) -> dict[str, RequestView]:
    """Every request published or reported since ``since_ms``, oldest first, by request id."""
    views: dict[str, RequestView] = {}
    for r in await read_topic(settings, FETCH_REQUESTS, since_ms):
        asked = _decode(r.value)
        rid = asked.get("request_id") if asked else None
        if isinstance(rid, str) and asked is not None:
            views[rid] = RequestView(rid, asked, {"status": "published"})
    for r in await read_topic(settings, REQUEST_EVENTS, since_ms):
        event = _decode(r.value)
        rid = event.get("request_id") if event else None
        if not isinstance(rid, str) or event is None:
            continue
        view = views.setdefault(rid, RequestView(rid, None, {"status": "published"}))
        prior = None if view.state.get("status") == "published" else view.state
        folded = fold(prior, event)
        if folded is not None:
            view.state = folded
    for r in await read_topic(settings, REQUEST_CANCELLATIONS, since_ms):
        rid = decode_cancellation(r.value)
        if rid in views:
            views[rid].cancelled = True
    return views


async def cancel(settings: Settings, request_id: str) -> None:
    """Publish the cancellation of ``request_id`` on ``request-cancellations``.

    Raises :class:`aiokafka.errors.KafkaError` when Kafka cannot be reached."""
    producer = make_producer(settings, client_id="tickpipe-cli")
    await producer.start()
    try:
        await produce_all(
            producer,
            [OutRecord(settings.topic(REQUEST_CANCELLATIONS), request_id.encode(),
                       encode_cancellation(request_id), [])],
        )  # fmt: skip
    finally:
        await producer.stop()
