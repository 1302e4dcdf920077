"""The tracker's faust-streaming app: thin wiring of :mod:`tickpipe_tracker.aggregate` onto
Kafka topics and faust tables.

Off the data path on purpose: faust only aggregates events here (its exactly-once and rebalance
issues cannot cost data — the worst case is a repeated request event).

* agent ``progress``: topic ``progress`` (keyed by request id) → ``planned`` / ``unit`` folded
  into the tables.
* agent ``failures``: topic ``failures`` (keyed by unit key), filtered to failures that carry a
  ``request_id``, re-keyed by it with ``group_by`` (faust repartition topic, so a request's
  failures meet its progress in the same partition), then folded into the same tables.
* tables (in memory, changelog-backed, so a restarted or rebalanced worker recovers them):
  ``requests`` (``request_id`` → :class:`RequestState`) and ``units``
  (``request_id|unit_key`` → :class:`UnitState`, only for requests still running: a request's
  unit states are deleted when it becomes final).
* output: ``request-events`` (keyed by request id, JSON).

Delivery: a table update's changelog record is published when faust commits the input offset,
and the agent awaits each request event's delivery before it takes its next input, so a crash
repeats events (the input is processed again from the recovered state) but never loses one.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import faust
import structlog
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.security import faust_broker_kwargs
from tickpipe_shared.kafka.topics import FAILURES, PROGRESS, REQUEST_EVENTS
from tickpipe_shared.metrics import RECORDS_CONSUMED, RECORDS_PRODUCED, Health
from tickpipe_shared.wire.failures import Failure
from tickpipe_shared.wire.progress import RequestPlanned, decode_progress

from tickpipe_tracker import aggregate, metrics
from tickpipe_tracker.aggregate import RequestState, Step, UnitState

log = structlog.get_logger()

STAGE = "tracker"
#: Table changelogs are compacted and also expire after this long (like the progress topic):
#: state older than its inputs could not be rebuilt anyway, and it bounds recovery.
STATE_RETENTION = timedelta(days=7)


#: What folding one input gives: the step, the unit key it concerns, the input kind.
Folded = tuple[Step, str | None, str]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _request_id_of_failure(value: bytes) -> str | None:
    try:
        data = json.loads(value)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    rid = data.get("request_id") if isinstance(data, dict) else None
    return rid if isinstance(rid, str) and rid else None


class Tracker:
    """The faust app and its tables, topics and agents for ``settings``."""

    def __init__(self, settings: Settings, health: Health | None = None) -> None:
        self.settings = settings
        self.health = health or Health()
        datadir = Path(tempfile.gettempdir()) / f"{settings.group(STAGE)}-data"
        self.app = faust.App(
            settings.group(STAGE),
            **faust_broker_kwargs(settings),
            store="memory://",
            datadir=str(datadir),
            web_enabled=False,  # /metrics and /healthz are ours (tickpipe_shared.metrics)
            autodiscover=False,
            topic_partitions=settings.topic_partitions,
            topic_replication_factor=settings.topic_replication,
            topic_disable_leader=True,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            key_serializer="raw",
            value_serializer="raw",
        )
        configs = {
            "cleanup.policy": "compact,delete",
            "retention.ms": str(int(STATE_RETENTION.total_seconds() * 1000)),
        }
        self.requests = self.app.Table("requests", key_type=str, extra_topic_configs=configs)
        self.units = self.app.Table("units", key_type=str, extra_topic_configs=configs)
        self.progress_topic = self.app.topic(settings.topic(PROGRESS))
        self.failures_topic = self.app.topic(settings.topic(FAILURES))
        self.events_topic = self.app.topic(settings.topic(REQUEST_EVENTS))
        # group_by's repartition topic, named under the app id like the changelogs.
        self.by_request_topic = self.app.topic(
            f"{settings.group(STAGE)}-failures-by-request-repartition",
            partitions=settings.topic_partitions,
            internal=True,
            deleting=True,
            retention=STATE_RETENTION,
        )
        self._lock = asyncio.Lock()
        self.app.agent(self.progress_topic, name="progress")(self._progress_agent)
        self.app.agent(self.failures_topic, name="failures")(self._failures_agent)
        self.app.timer(interval=5.0)(self._beat)

    # --- state -----------------------------------------------------------------------------

    def _request(self, request_id: str) -> RequestState | None:
        data = self.requests.get(request_id)
        return RequestState.from_dict(data) if data is not None else None

    def _unit(self, request_id: str, unit_key: str) -> UnitState | None:
        data = self.units.get(aggregate.unit_table_key(request_id, unit_key))
        return UnitState.from_dict(data) if data is not None else None

    async def _apply(self, step: Step, unit_key: str | None, kind: str) -> None:
        """Store what ``step`` changed, then publish its events (and wait for the broker)."""
        rid = step.request.request_id
        if step.unit is not None and unit_key is not None:
            self.units[aggregate.unit_table_key(rid, unit_key)] = step.unit.to_dict()
        if step.request_changed:
            self.requests[rid] = step.request.to_dict()
        if aggregate.became_final(step):
            # Same partition as this input (keys start with the request id, which keys every
            # input of the request), so the tombstones go to the right changelog partition.
            for key in aggregate.finished_units(rid, list(self.units.keys())):
                del self.units[key]
        changed = step.unit is not None or step.request_changed
        metrics.INPUTS.labels(kind, "counted" if changed else "duplicate").inc()
        for event in step.events:
            value = aggregate.encode_event(event)
            await (await self.events_topic.send(key=rid.encode(), value=value))
            metrics.REQUEST_EVENTS.labels(event["event"]).inc()
            RECORDS_PRODUCED.labels(STAGE, self.events_topic.get_topic_name()).inc()
            if event["event"] != "progress":
                log.info("request finished", request_id=rid, outcome=event["event"],
                         **_summary(event))  # fmt: skip

    # --- agents ----------------------------------------------------------------------------

    async def _progress_agent(self, stream: faust.StreamT[Any]) -> None:
        topic = self.progress_topic.get_topic_name()
        async for value in stream:
            RECORDS_CONSUMED.labels(STAGE, topic).inc()
            await self._fold_and_apply("progress", self._fold_progress, value)

    async def _failures_agent(self, stream: faust.StreamT[Any]) -> None:
        topic = self.failures_topic.get_topic_name()

        def attributable(value: bytes) -> bool:
            RECORDS_CONSUMED.labels(STAGE, topic).inc()
            if _request_id_of_failure(value) is None:
                metrics.INPUTS.labels("failure", "unattributed").inc()
                return False
            return True

        by_request = (
            cast("faust.Stream[bytes]", stream)
            .filter(cast(Any, attributable))
            .group_by(_request_id_of_failure, name="by-request", topic=self.by_request_topic)
        )
        async for value in by_request:
            await self._fold_and_apply("failure", self._fold_failure, value)

    async def _fold_and_apply(
        self, kind: str, fold: Callable[[bytes], Folded], value: bytes
    ) -> None:
        """Fold one input and publish its events as one step. The two agents run concurrently:
        without the lock, one could read a request's state, the other complete it, and the
        first publish a ``progress`` after the ``completed`` (sends await, so they interleave)."""
        async with self._lock:
            folded = self._fold(kind, fold, value)
            if folded is not None:
                await self._apply(*folded)

    def _fold(self, kind: str, fold: Callable[[bytes], Folded], value: bytes) -> Folded | None:
        """Run ``fold`` on one input; a bad input or a bug skips the input with a log line (the
        tracker is off the data path: one wrong count must not stop every request's tracking)."""
        try:
            return fold(value)
        except ValueError as e:
            metrics.INPUTS.labels(kind, "invalid").inc()
            log.warning("invalid input skipped", kind=kind, error=str(e))
        except Exception:
            metrics.INPUTS.labels(kind, "error").inc()
            log.exception("input skipped after an unexpected error", kind=kind)
        return None

    def _fold_progress(self, value: bytes) -> Folded:
        ev = decode_progress(value)
        now = _now_ms()
        if isinstance(ev, RequestPlanned):
            return aggregate.on_planned(self._request(ev.request_id), ev, now), None, "planned"
        unit = self._unit(ev.request_id, ev.unit_key)
        return aggregate.on_unit(self._request(ev.request_id), unit, ev, now), ev.unit_key, "unit"

    def _fold_failure(self, value: bytes) -> Folded:
        f = Failure.from_json(value)
        if f.request_id is None:
            raise ValueError("failure without request_id")
        unit_key = aggregate.failure_unit_key(f)
        planner = f.stage == aggregate.PLANNER_STAGE
        unit = None if planner else self._unit(f.request_id, unit_key)
        step = aggregate.on_failure(self._request(f.request_id), unit, f, _now_ms())
        return step, unit_key, "failure"

    async def _beat(self) -> None:
        """/healthz: healthy while the app runs (this timer fires) and has not crashed."""
        if self.app.crashed or self.app.should_stop:
            self.health.fail(f"faust app stopped: {self.app.crash_reason or 'stopping'}")
        else:
            self.health.beat()
        # Recounted from the table (not kept incrementally) so that a restarted tracker, whose
        # table comes back from its changelog, reports the right number.
        metrics.OPEN_REQUESTS.set(aggregate.open_requests(self.requests.values()))


def _summary(event: dict[str, Any]) -> dict[str, Any]:
    skip = ("schema", "event", "request_id", "failures")
    return {k: v for k, v in event.items() if k not in skip}
