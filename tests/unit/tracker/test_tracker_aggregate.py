"""``tickpipe_tracker.aggregate``: folding progress and failures into request events, without
Kafka. A tiny driver plays the faust tables (two dicts) the way ``app.py`` does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tickpipe_shared.wire.failures import Failure
from tickpipe_shared.wire.progress import RequestPlanned, UnitFinished
from tickpipe_tracker import aggregate
from tickpipe_tracker.aggregate import (
    MAX_FAILURES,
    PROGRESS_INTERVAL_MS,
    RequestState,
    Step,
    UnitState,
)

ROOT = Path(__file__).resolve().parents[3]
RID = "r1"
T0 = 1_700_000_000_000


def key(hour: int) -> str:
    return f"dukascopy-bi5|EURUSD|ticks|2019-02-04T{hour:02d}:00:00Z"


def planned(units: int, rid: str = RID) -> RequestPlanned:
    return RequestPlanned(rid, "dukascopy-bi5", "EURUSD", "ticks", units, at_ms=T0)


def unit(hour: int, rows: int, rid: str = RID) -> UnitFinished:
    return UnitFinished(rid, key(hour), "EURUSD", "stored" if rows else "empty", rows, at_ms=T0)


def failure(hour: int, stage: str = "decoder", rid: str | None = RID) -> Failure:
    return Failure(stage, f"bad hour {hour}", "DecodeError", key=key(hour), unit_key=key(hour),
                   request_id=rid, at_ms=T0)  # fmt: skip


def rejection(rid: str = RID) -> Failure:
    return Failure("fetcher-planner", "unknown instrument 'NOPE'", "UnknownInstrumentError",
                   key="NOPE", unit_key="NOPE", request_id=rid, at_ms=T0)  # fmt: skip


class Tables:
    """The two faust tables as dicts of JSON-able values, round-tripped through JSON like a
    changelog recovery would."""

    def __init__(self) -> None:
        self.requests: dict[str, Any] = {}
        self.units: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.now = T0

    def req(self, rid: str) -> RequestState | None:
        data = self.requests.get(rid)
        return RequestState.from_dict(json.loads(json.dumps(data))) if data else None

    def unit(self, rid: str, unit_key: str) -> UnitState | None:
        data = self.units.get(aggregate.unit_table_key(rid, unit_key))
        return UnitState.from_dict(json.loads(json.dumps(data))) if data else None

    def apply(self, step: Step, unit_key: str | None) -> list[dict[str, Any]]:
        rid = step.request.request_id
        if step.unit is not None:
            assert unit_key is not None
            self.units[aggregate.unit_table_key(rid, unit_key)] = step.unit.to_dict()
        if step.request_changed:
            self.requests[rid] = step.request.to_dict()
        for e in step.events:
            json.loads(aggregate.encode_event(e))  # encodable
        self.events += step.events
        return step.events

    def feed(self, ev: RequestPlanned | UnitFinished | Failure, *, dt_ms: int = 0) -> list[Any]:
        self.now += dt_ms
        if isinstance(ev, RequestPlanned):
            return self.apply(aggregate.on_planned(self.req(ev.request_id), ev, self.now), None)
        if isinstance(ev, UnitFinished):
            u = self.unit(ev.request_id, ev.unit_key)
            step = aggregate.on_unit(self.req(ev.request_id), u, ev, self.now)
            return self.apply(step, ev.unit_key)
        assert ev.request_id is not None
        uk = aggregate.failure_unit_key(ev)
        u = None if ev.stage == aggregate.PLANNER_STAGE else self.unit(ev.request_id, uk)
        return self.apply(aggregate.on_failure(self.req(ev.request_id), u, ev, self.now), uk)

    def of(self, kind: str, rid: str = RID) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind and e["request_id"] == rid]

    def state(self, rid: str = RID) -> RequestState:
        s = self.req(rid)
        assert s is not None
        return s


def counts(e: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(e[k] for k in ("units", "stored", "empty", "failed", "ticks"))


# --- completion --------------------------------------------------------------------------------


def candle_unit(day: int, rows: int, outcome: str | None = None) -> UnitFinished:
    k = f"dukascopy-json|EURUSD|candles:1m:bid|2019-02-{day:02d}T00:00:00Z"
    return UnitFinished(RID, k, "EURUSD", outcome or ("stored" if rows else "empty"),  # type: ignore[arg-type]
                        rows, at_ms=T0)  # fmt: skip


def test_suspect_empty_units_count_apart_and_complete_the_request() -> None:
    t = Tables()
    t.feed(RequestPlanned(RID, "dukascopy-json", "EURUSD", "candles:1m:bid", 3, skipped=2,
                          at_ms=T0))  # fmt: skip
    t.feed(candle_unit(4, 1440))
    t.feed(candle_unit(5, 0, "suspect-empty"))
    assert not t.of("completed")
    assert t.state().suspect_empty == 1 and t.state().stored == 1
    t.feed(candle_unit(5, 0, "suspect-empty"))  # a redelivery counts once
    t.feed(candle_unit(6, 0))
    (done,) = t.of("completed")
    assert counts(done) == (3, 1, 1, 0, 1440)
    assert (done["suspect_empty"], done["skipped"], done["kind"]) == (1, 2, "candles:1m:bid")
    assert all(e["skipped"] == 2 for e in t.of("progress") if e["units"] is not None)


def test_a_failed_unit_later_found_suspect_empty_moves_there() -> None:
    t = Tables()
    t.feed(planned(1))
    failed = Failure("fetcher", "HTTP 503", "DownloadError", key=key(0), unit_key=key(0),
                     request_id=RID, at_ms=T0)  # fmt: skip
    t.feed(failed)
    assert t.state().failed == 1 and t.of("completed")
    t.feed(UnitFinished(RID, key(0), "EURUSD", "suspect-empty", 0, at_ms=T0))
    s = t.state()
    assert (s.failed, s.suspect_empty, s.stored, s.failures) == (0, 1, 0, [])
    # In the database: a later failure of the same unit changes nothing.
    assert t.feed(failed) == [] and t.state().suspect_empty == 1


def test_plan_with_another_skipped_count_replaces_it() -> None:
    t = Tables()
    t.feed(RequestPlanned(RID, "dukascopy-bi5", "EURUSD", "ticks", 4, skipped=0, at_ms=T0))
    assert t.feed(RequestPlanned(RID, "dukascopy-bi5", "EURUSD", "ticks", 4, skipped=0,
                                 at_ms=T0), dt_ms=5000) == []  # fmt: skip
    t.feed(RequestPlanned(RID, "dukascopy-bi5", "EURUSD", "ticks", 2, skipped=2, at_ms=T0),
           dt_ms=5000)  # fmt: skip
    assert (t.state().units, t.state().skipped) == (2, 2)
    assert t.of("progress")[-1]["skipped"] == 2


def test_state_of_an_older_tracker_without_the_new_counts_loads() -> None:
    old = {"request_id": RID, "units": 2, "stored": 1, "empty": 0, "failed": 0, "ticks": 5,
           "failures": [], "first_at_ms": T0, "last_progress_ms": None,
           "last_progress_step": -1, "final": None, "final_at_ms": None, "source": None,
           "instrument": None, "kind": None}  # fmt: skip
    s = RequestState.from_dict(old)
    assert (s.suspect_empty, s.skipped, s.done) == (0, 0, 1)


def test_completes_once_with_the_counts() -> None:
    t = Tables()
    t.feed(planned(3))
    t.feed(unit(0, 100))
    t.feed(unit(1, 0))
    assert not t.of("completed")
    t.feed(failure(2))
    (done,) = t.of("completed")
    assert counts(done) == (3, 1, 1, 1, 100)
    assert done["failures"] == [
        {"unit_key": key(2), "stage": "decoder", "error_class": "DecodeError",
         "reason": "bad hour 2"}
    ]  # fmt: skip
    assert (done["source"], done["instrument"], done["kind"]) == ("dukascopy-bi5", "EURUSD",
                                                                   "ticks")  # fmt: skip
    assert done["started_ms"] == T0
    assert t.events[-1] is done
    assert t.state().final == "completed"


def test_duplicates_change_nothing_and_never_complete_twice() -> None:
    t = Tables()
    t.feed(planned(2))
    t.feed(unit(0, 10))
    assert t.feed(unit(0, 10)) == []
    assert t.state().stored == 1 and t.state().ticks == 10
    t.feed(unit(1, 5))
    assert len(t.of("completed")) == 1
    # Every later duplicate: a unit, a failure of a stored unit, the plan again.
    for ev in (unit(0, 10), unit(1, 5), failure(1), planned(2)):
        assert t.feed(ev, dt_ms=5000) == []
    assert len(t.of("completed")) == 1
    assert counts(t.of("completed")[0]) == (2, 2, 0, 0, 15)


def test_units_before_the_plan_are_counted_and_completion_waits_for_it() -> None:
    t = Tables()
    t.feed(unit(0, 7))
    t.feed(unit(1, 0))
    t.feed(failure(2))
    assert not t.of("completed")
    assert t.state().units is None and t.state().done == 3
    # Progress before the plan has units null.
    assert t.of("progress")[0]["units"] is None
    t.feed(planned(3))
    (done,) = t.of("completed")
    assert counts(done) == (3, 1, 1, 1, 7)


def test_zero_unit_request_completes_on_its_plan() -> None:
    t = Tables()
    t.feed(planned(0))
    assert counts(t.of("completed")[0]) == (0, 0, 0, 0, 0)


def test_completion_when_more_units_than_planned_arrive() -> None:
    t = Tables()
    t.feed(planned(1))
    t.feed(unit(0, 1))
    t.feed(unit(1, 1))  # not planned (a re-plan?): counted, nothing emitted again
    assert len(t.of("completed")) == 1


# --- failures ----------------------------------------------------------------------------------


def test_a_unit_failing_in_several_stages_counts_once() -> None:
    t = Tables()
    t.feed(planned(3))
    t.feed(failure(0, "fetcher"))
    assert t.feed(failure(0, "decoder")) == []
    assert t.feed(failure(0, "fetcher")) == []
    s = t.state()
    assert s.failed == 1 and len(s.failures) == 1 and s.failures[0].stage == "fetcher"


def test_a_failed_unit_that_is_stored_later_moves_to_stored() -> None:
    t = Tables()
    t.feed(planned(2))
    t.feed(failure(0, "writer"))
    t.feed(unit(0, 42))  # the redelivery went through
    s = t.state()
    assert (s.stored, s.failed, s.ticks, s.failures) == (1, 0, 42, [])
    t.feed(unit(1, 0))
    assert counts(t.of("completed")[0]) == (2, 1, 1, 0, 42)
    assert t.of("completed")[0]["failures"] == []


def test_a_stored_unit_rewritten_with_other_rows_replaces_its_ticks() -> None:
    t = Tables()
    t.feed(planned(2))
    t.feed(unit(0, 10))
    t.feed(unit(0, 12))
    assert (t.state().stored, t.state().ticks) == (1, 12)
    t.feed(unit(0, 0))  # rewritten empty
    assert (t.state().stored, t.state().empty, t.state().ticks) == (0, 1, 0)


def test_failure_reasons_are_capped() -> None:
    t = Tables()
    t.feed(planned(MAX_FAILURES + 3))
    for h in range(MAX_FAILURES + 3):
        t.feed(failure(h))
    (done,) = t.of("completed")
    assert done["failed"] == MAX_FAILURES + 3
    assert len(done["failures"]) == MAX_FAILURES


def test_long_reasons_are_cut() -> None:
    t = Tables()
    t.feed(planned(1))
    long = Failure("decoder", "x" * 10_000, "DecodeError", unit_key=key(0), request_id=RID)
    t.feed(long)
    assert len(t.of("completed")[0]["failures"][0]["reason"]) == aggregate.MAX_REASON


def test_failure_without_unit_key_falls_back_to_its_key_then_position() -> None:
    assert aggregate.failure_unit_key(Failure("d", "r", "E", key="k")) == "k"
    f = Failure("d", "r", "E", topic="t", partition=1, offset=9)
    assert aggregate.failure_unit_key(f) == "t:1:9"


def test_failure_without_request_id_is_refused() -> None:
    with pytest.raises(ValueError, match="request_id"):
        aggregate.on_failure(None, None, failure(0, rid=None), T0)


# --- rejection ---------------------------------------------------------------------------------


def test_planner_failure_rejects_the_request_once() -> None:
    t = Tables()
    t.feed(rejection())
    (rej,) = t.of("rejected")
    assert rej["reason"] == "unknown instrument 'NOPE'"
    assert rej["error_class"] == "UnknownInstrumentError"
    assert t.feed(rejection()) == []
    assert t.state().final == "rejected" and t.state().failed == 0
    # Nothing about a rejected request is emitted any more.
    assert t.feed(planned(1)) == [] and t.feed(unit(0, 1)) == []
    assert not t.of("completed")


def test_a_completed_request_is_not_rejected_afterwards() -> None:
    t = Tables()
    t.feed(planned(1))
    t.feed(unit(0, 1))
    assert t.feed(rejection()) == []
    assert t.state().final == "completed"


# --- progress ----------------------------------------------------------------------------------


def test_progress_is_throttled_per_request_but_every_10_percent_step_is_emitted() -> None:
    t = Tables()
    t.feed(planned(100))  # first snapshot (step 0)
    for h in range(1, 35):
        t.feed(unit(h, 1), dt_ms=10)  # 10 ms apart: only the 10 % steps get through
    steps = [e["stored"] for e in t.of("progress")]
    assert steps == [0, 10, 20, 30]
    t.feed(unit(35, 1), dt_ms=PROGRESS_INTERVAL_MS)  # a second later: a snapshot
    assert t.of("progress")[-1]["stored"] == 35
    assert t.feed(unit(36, 1), dt_ms=10) == []


def test_requests_are_throttled_independently() -> None:
    t = Tables()
    t.feed(planned(100, rid="a"))
    t.feed(planned(100, rid="b"))
    assert len(t.of("progress", "a")) == 1 and len(t.of("progress", "b")) == 1


def test_completion_replaces_the_last_progress() -> None:
    t = Tables()
    t.feed(planned(2))
    t.feed(unit(0, 1), dt_ms=1)
    t.feed(unit(1, 1), dt_ms=1)
    assert t.events[-1]["event"] == "completed"


# --- state and encoding ------------------------------------------------------------------------


def test_states_round_trip_through_json() -> None:
    t = Tables()
    t.feed(planned(3))
    t.feed(failure(1))
    s = t.state()
    assert RequestState.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    u = UnitState("stored", 5)
    assert UnitState.from_dict(json.loads(json.dumps(u.to_dict()))) == u


def test_unit_table_key() -> None:
    assert aggregate.unit_table_key("r", key(0)) == f"r|{key(0)}"


def test_events_validate_against_the_published_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "docs" / "schemas" / "request-event.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    t = Tables()
    t.feed(unit(9, 3))  # progress with units null
    t.feed(planned(3))
    t.feed(unit(0, 100))
    t.feed(failure(1))
    t.feed(rejection(rid="other"))
    kinds = {e["event"] for e in t.events}
    assert kinds == {"progress", "completed", "rejected"}
    for e in t.events:
        validator.validate(e)
    for example in schema["examples"]:
        validator.validate(example)
    assert not validator.is_valid({"schema": 1, "event": "completed", "request_id": "r",
                                   "at_ms": 1})  # fmt: skip
    assert not validator.is_valid({"schema": 1, "event": "rejected", "request_id": "r",
                                   "at_ms": 1})  # fmt: skip


class ForgettingTables(Tables):
    """:class:`Tables` that drop a request's unit states when it becomes final, as app.py's
    ``_apply`` does."""

    def apply(self, step: Step, unit_key: str | None) -> list[dict[str, Any]]:
        events = super().apply(step, unit_key)
        if aggregate.became_final(step):
            rid = step.request.request_id
            for k in aggregate.finished_units(rid, list(self.units)):
                del self.units[k]
        return events


def test_unit_states_are_bounded_by_the_requests_in_progress() -> None:
    t = ForgettingTables()
    peak = 0
    for r in range(50):  # 50 requests of 100 units one after the other: 5 000 units in all
        rid = f"req-{r}"
        t.feed(planned(100, rid))
        for h in range(100):
            t.feed(unit(h, 10, rid))
            peak = max(peak, len(t.units))
        assert len(t.of("completed", rid)) == 1
        assert t.state(rid).stored == 100 and t.state(rid).ticks == 1000
    assert peak <= 100  # never more than one running request's units
    assert t.units == {}


def test_running_requests_keep_their_units_and_a_rejection_forgets_nothing_else() -> None:
    t = ForgettingTables()
    t.feed(planned(3, "a"))
    t.feed(unit(0, 5, "a"))
    t.feed(planned(2, "b"))
    t.feed(unit(0, 5, "b"))
    t.feed(unit(1, 5, "b"))  # b completes
    assert set(t.units) == {aggregate.unit_table_key("a", key(0))}
    t.feed(unit(0, 5, "a"))  # a redelivery of a running request's unit still counts once
    assert t.state("a").stored == 1
    t.feed(rejection("c"))
    assert set(t.units) == {aggregate.unit_table_key("a", key(0))}
    assert aggregate.finished_units("a", ["a|x", "ab|y", "b|a|z"]) == ["a|x"]


def test_cancelled_units_count_apart_and_complete_the_request() -> None:
    t = Tables()
    t.feed(planned(3))
    t.feed(unit(0, 10))
    for hour in (1, 2):
        t.feed(Failure("fetcher", "request r1 was cancelled: unit not downloaded",
                       "RequestCancelledError", key=key(hour), unit_key=key(hour),
                       request_id=RID, at_ms=T0))  # fmt: skip
    (done,) = t.of("completed")
    assert (done["stored"], done["failed"], done["cancelled"]) == (1, 0, 2)
    assert done["failures"] == []  # a cancellation is no failure reason


def test_the_planners_notes_reach_the_request_events() -> None:
    t = Tables()
    note = "planned without the instrument detail of EUR-USD (download failed …)"
    t.feed(RequestPlanned(RID, "dukascopy-json", "EURUSD", "ticks", 1, notes=[note], at_ms=T0))
    t.feed(unit(0, 5))
    (done,) = t.of("completed")
    assert done["notes"] == [note]
    assert all(e["notes"] == [note] for e in t.of("progress"))


def test_open_requests_counts_the_ones_without_a_final_event() -> None:
    t = Tables()
    t.feed(planned(2, rid="done"))
    t.feed(unit(0, 10, rid="done"))
    t.feed(unit(1, 10, rid="done"))
    t.feed(planned(2, rid="waiting"))
    t.feed(unit(0, 10, rid="waiting"))
    t.feed(unit(5, 10, rid="unplanned"))  # units seen before the plan: open too
    t.feed(rejection(rid="rejected"))
    assert set(t.requests) == {"done", "waiting", "unplanned", "rejected"}
    assert aggregate.open_requests(t.requests.values()) == 2
