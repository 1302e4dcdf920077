"""Per-request aggregation of progress and failures into request events — pure, no Kafka.

The tracker keeps two kinds of state, both plain JSON-able dataclasses:

* :class:`UnitState`, one per ``request_id|unit_key``: the outcome of one unit as far as the
  tracker knows. Delivery is at-least-once, so the same unit is reported more than once; the
  unit state makes a repeat change nothing. Unit states live only while their request runs:
  they are dropped when it becomes final (:func:`finished_units`), so memory is bounded by the
  units of the requests in progress (about 0.3 kB each), not by every unit ever tracked.
* :class:`RequestState`, one per ``request_id``: the planned unit count, the units the planner
  skipped, counts per outcome, rows stored, the first few failure reasons, the progress
  throttle, and whether the request is finished (``completed`` or ``rejected``) so that its
  final event is emitted once.

Three functions fold one input into that state and return what to store and what to emit:
:func:`on_planned`, :func:`on_unit`, :func:`on_failure`. The caller (``app.py``) reads the
states from its tables, calls one of them, writes the changed states back and publishes the
events.

Rules:

* A unit counts once. Its outcome is ``stored``, ``empty``, ``suspect-empty`` (no rows although
  the market was open: counted apart, never as stored), ``failed`` or ``cancelled`` (a failure
  record of error class ``RequestCancelledError``: the downloader skipped it because the
  request was cancelled); a unit that failed and is
  later reported in the database (a retry that went through) moves to that outcome; a unit that
  is in the database stays there whatever failure is reported for it later.
* Units may be reported before the ``planned`` event (different producers, different partitions
  upstream): they are counted and completion waits for the plan.
* ``completed`` is emitted once, when ``stored + empty + suspect_empty + failed + cancelled
  >= units``.
  ``units`` never includes the units the planner skipped because the ingest log already had
  them (``skip_existing``); they are reported as ``skipped``. A failure of stage
  ``fetcher-planner`` (the whole request refused) emits ``rejected`` instead. After either, the
  request is final: later reports update the counts but emit nothing.
* ``progress`` snapshots: on every 10 % step of the finished units, otherwise at most one per
  request per :data:`PROGRESS_INTERVAL_MS` (so the last snapshot lags the truth by less than a
  10 % step; ``completed`` carries the final counts).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tickpipe_shared.wire.failures import Failure
from tickpipe_shared.wire.progress import RequestPlanned, UnitFinished
from tickpipe_shared.wire.request_events import CANCELLED_ERROR_CLASS

#: Stage whose failures mean the request as a whole was refused.
PLANNER_STAGE = "fetcher-planner"
#: Failure reasons kept per request (and carried by ``completed``).
MAX_FAILURES = 5
#: Longest a reason is kept, in characters.
MAX_REASON = 500
#: At most one ``progress`` snapshot per request per this many ms (10 % steps excepted).
PROGRESS_INTERVAL_MS = 1000
#: Version of the request-event JSON.
EVENT_SCHEMA = 1

Outcome = Literal["stored", "empty", "suspect-empty", "failed", "cancelled"]
Final = Literal["completed", "rejected"]


@dataclass(slots=True)
class UnitState:
    """What the tracker knows about one unit of one request."""

    outcome: Outcome
    rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (table value)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UnitState:
        """Inverse of :meth:`to_dict`."""
        return cls(outcome=data["outcome"], rows=int(data.get("rows", 0)))


@dataclass(slots=True)
class FailureNote:
    """One failure reason kept for the request's summary."""

    unit_key: str
    stage: str
    error_class: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


@dataclass(slots=True)
class RequestState:
    """Everything the tracker knows about one request."""

    request_id: str
    units: int | None = None  # planned unit count; None until the planned event
    source: str | None = None
    instrument: str | None = None
    kind: str | None = None
    stored: int = 0
    empty: int = 0
    failed: int = 0
    ticks: int = 0  # rows stored over the stored units: ticks, or candles for a candle kind
    suspect_empty: int = 0
    cancelled: int = 0  # units skipped by the downloader because the request was cancelled
    skipped: int = 0  # units left out by the planner (skip_existing), from the planned event
    notes: list[str] = field(default_factory=list)  # the planner's, from the planned event
    failures: list[FailureNote] = field(default_factory=list)
    first_at_ms: int | None = None  # first event seen about the request
    last_progress_ms: int | None = None  # last progress snapshot emitted
    last_progress_step: int = -1  # 10 % step of the last snapshot (0..10)
    final: Final | None = None  # set once completed/rejected was emitted
    final_at_ms: int | None = None

    @property
    def done(self) -> int:
        """Units accounted for: stored + empty + suspect_empty + failed + cancelled."""
        return self.stored + self.empty + self.suspect_empty + self.failed + self.cancelled

    @property
    def complete(self) -> bool:
        """Every planned unit is accounted for (False before the plan is known)."""
        return self.units is not None and self.done >= self.units

    def step(self) -> int:
        """The 10 % step reached (0..10); -1 while the plan is unknown."""
        if self.units is None:
            return -1
        if self.units == 0:
            return 10
        return min(10, self.done * 10 // self.units)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (table value)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestState:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["failures"] = [FailureNote(**f) for f in data.get("failures", [])]
        return cls(**data)


@dataclass(slots=True)
class Step:
    """What folding one input produced.

    ``request`` is the request's new state (always returned; ``request_changed`` tells whether
    it differs), ``unit`` the unit's new state when it changed (``None``: store nothing),
    ``events`` the request events to publish, in order.
    """

    request: RequestState
    request_changed: bool = False
    unit: UnitState | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


def unit_table_key(request_id: str, unit_key: str) -> str:
    """Key of a unit's state: ``request_id|unit_key``."""
    return f"{request_id}|{unit_key}"


def finished_units(request_id: str, keys: Iterable[str]) -> list[str]:
    """The keys among ``keys`` (of the unit table) that belong to ``request_id``: forgotten once
    the request is final, so the unit table holds only units of requests still running and stays
    bounded however many requests and units pass (a later report of such a unit is counted into
    the final request's counts again, but emits nothing: the request is final)."""
    prefix = f"{request_id}|"
    return [k for k in keys if k.startswith(prefix)]


def became_final(step: Step) -> bool:
    """True when ``step`` emitted the request's ``completed`` or ``rejected`` event."""
    return any(e["event"] in ("completed", "rejected") for e in step.events)


def encode_event(event: dict[str, Any]) -> bytes:
    """The record value of a request event (compact UTF-8 JSON)."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


# --- events ------------------------------------------------------------------------------------


def _counts(req: RequestState) -> dict[str, Any]:
    return {
        "units": req.units,
        "stored": req.stored,
        "empty": req.empty,
        "suspect_empty": req.suspect_empty,
        "failed": req.failed,
        "cancelled": req.cancelled,
        "skipped": req.skipped,
        "ticks": req.ticks,
        **({"notes": req.notes} if req.notes else {}),
    }


def progress_event(req: RequestState, now_ms: int) -> dict[str, Any]:
    """A ``progress`` snapshot of ``req``."""
    return {
        "schema": EVENT_SCHEMA,
        "event": "progress",
        "request_id": req.request_id,
        **_counts(req),
        "at_ms": now_ms,
    }


def completed_event(req: RequestState, now_ms: int) -> dict[str, Any]:
    """The ``completed`` event of ``req``."""
    return {
        "schema": EVENT_SCHEMA,
        "event": "completed",
        "request_id": req.request_id,
        **_counts(req),
        "failures": [f.to_dict() for f in req.failures],
        "source": req.source,
        "instrument": req.instrument,
        "kind": req.kind,
        "started_ms": req.first_at_ms,
        "at_ms": now_ms,
    }


def rejected_event(req: RequestState, failure: Failure, now_ms: int) -> dict[str, Any]:
    """The ``rejected`` event of ``req``: the planner refused it."""
    return {
        "schema": EVENT_SCHEMA,
        "event": "rejected",
        "request_id": req.request_id,
        "reason": failure.reason[:MAX_REASON],
        "error_class": failure.error_class,
        "at_ms": now_ms,
    }


def _after_change(req: RequestState, now_ms: int) -> list[dict[str, Any]]:
    """Events due after ``req``'s counts or plan changed (``req`` is updated in place)."""
    if req.final is not None:
        return []
    if req.complete:
        req.final, req.final_at_ms = "completed", now_ms
        return [completed_event(req, now_ms)]
    step = req.step()
    due = step > req.last_progress_step or (
        req.last_progress_ms is None or now_ms - req.last_progress_ms >= PROGRESS_INTERVAL_MS
    )
    if not due:
        return []
    req.last_progress_ms = now_ms
    req.last_progress_step = max(step, req.last_progress_step)
    return [progress_event(req, now_ms)]


def _seen(req: RequestState, at_ms: int) -> None:
    if req.first_at_ms is None or at_ms < req.first_at_ms:
        req.first_at_ms = at_ms


# --- folding -----------------------------------------------------------------------------------


def open_requests(states: Iterable[Mapping[str, Any]]) -> int:
    """How many of ``states`` (``requests`` table values, :meth:`RequestState.to_dict`) are
    neither completed nor rejected yet (no final event emitted)."""
    return sum(1 for data in states if data.get("final") is None)


def on_planned(req: RequestState | None, ev: RequestPlanned, now_ms: int) -> Step:
    """Fold a ``planned`` event: the request's unit count (and skipped count) becomes known.

    A repeated ``planned`` (redelivery) with the same counts changes nothing; different counts
    replace the first ones (the planner's last word).
    """
    state = req if req is not None else RequestState(ev.request_id)
    if (
        req is not None
        and (state.units, state.skipped, state.notes) == (ev.units, ev.skipped, ev.notes)
        and (state.source, state.instrument, state.kind) == (ev.source, ev.instrument, ev.kind)
    ):
        return Step(state)
    state.units, state.skipped, state.notes = ev.units, ev.skipped, list(ev.notes)
    state.source, state.instrument, state.kind = ev.source, ev.instrument, ev.kind
    _seen(state, ev.at_ms)
    return Step(state, request_changed=True, events=_after_change(state, now_ms))


#: The :class:`RequestState` counter of each outcome.
_COUNTER: dict[str, str] = {
    "stored": "stored",
    "empty": "empty",
    "suspect-empty": "suspect_empty",
    "failed": "failed",
    "cancelled": "cancelled",
}


def _account(req: RequestState, old: UnitState | None, new: UnitState) -> None:
    """Move a unit's contribution to the counts from ``old`` to ``new``."""
    if old is not None:
        counter = _COUNTER[old.outcome]
        setattr(req, counter, getattr(req, counter) - 1)
        if old.outcome == "stored":
            req.ticks -= old.rows
    counter = _COUNTER[new.outcome]
    setattr(req, counter, getattr(req, counter) + 1)
    if new.outcome == "stored":
        req.ticks += new.rows


def _transition(old: UnitState | None, new: UnitState) -> bool:
    """Whether a unit in state ``old`` takes the newly reported ``new``."""
    if old is None:
        return True
    if new.outcome in ("failed", "cancelled"):
        return False  # failed once already, or in the database: a failure changes nothing
    return old != new  # failed → in the database, or a rewrite with another row count


def on_unit(
    req: RequestState | None, unit: UnitState | None, ev: UnitFinished, now_ms: int
) -> Step:
    """Fold a writer's ``unit`` event; ``unit`` is that unit's state so far (or ``None``)."""
    state = req if req is not None else RequestState(ev.request_id)
    new = UnitState(outcome=ev.outcome, rows=ev.rows if ev.outcome == "stored" else 0)
    if not _transition(unit, new):
        return Step(state, request_changed=req is None)
    _account(state, unit, new)
    if unit is not None and unit.outcome == "failed":
        state.failures = [f for f in state.failures if f.unit_key != ev.unit_key]
    _seen(state, ev.at_ms)
    return Step(state, request_changed=True, unit=new, events=_after_change(state, now_ms))


def failure_unit_key(f: Failure) -> str:
    """The unit a failure is about: its ``unit_key``, else its record key, else its position."""
    return f.unit_key or f.key or f"{f.topic}:{f.partition}:{f.offset}"


def on_failure(req: RequestState | None, unit: UnitState | None, f: Failure, now_ms: int) -> Step:
    """Fold a failure record carrying ``request_id``; ``unit`` is the failed unit's state so far.

    A ``fetcher-planner`` failure rejects the whole request (``unit`` is ignored); any other
    counts its unit as failed once.
    """
    if f.request_id is None:
        raise ValueError("failure without request_id cannot be attributed")
    state = req if req is not None else RequestState(f.request_id)
    _seen(state, f.at_ms)
    if f.stage == PLANNER_STAGE:
        if state.final is not None:
            return Step(state, request_changed=req is None)
        state.final, state.final_at_ms = "rejected", now_ms
        state.failures = [
            FailureNote(failure_unit_key(f), f.stage, f.error_class, f.reason[:MAX_REASON])
        ]
        return Step(state, request_changed=True, events=[rejected_event(state, f, now_ms)])
    cancelled = f.error_class == CANCELLED_ERROR_CLASS
    new = UnitState(outcome="cancelled" if cancelled else "failed")
    if not _transition(unit, new):
        return Step(state, request_changed=req is None)
    _account(state, unit, new)
    if not cancelled and len(state.failures) < MAX_FAILURES:
        state.failures.append(
            FailureNote(failure_unit_key(f), f.stage, f.error_class, f.reason[:MAX_REASON])
        )
    return Step(state, request_changed=True, unit=new, events=_after_change(state, now_ms))
