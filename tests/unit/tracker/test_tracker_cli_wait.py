"""``tickpipe request --wait``'s folding of request events (``tickpipe_cli.requests.WaitResult``),
fed with events the tracker's aggregation really produces."""

from __future__ import annotations

from typing import Any

from tickpipe_cli.requests import WaitResult
from tickpipe_shared.wire.failures import Failure
from tickpipe_shared.wire.progress import RequestPlanned, UnitFinished
from tickpipe_tracker import aggregate

RID = "r1"


def events() -> list[dict[str, Any]]:
    """planned 2 → one stored unit → one failed unit (a progress, then the completion)."""
    out: list[dict[str, Any]] = []
    step = aggregate.on_planned(None, RequestPlanned(RID, "s", "EURUSD", "ticks", 2), 0)
    out += step.events
    key = "s|EURUSD|ticks|2019-02-04T00:00:00Z"
    step = aggregate.on_unit(step.request, None, UnitFinished(RID, key, "EURUSD", "stored", 9), 1)
    out += step.events
    f = Failure("decoder", "truncated", "DecodeError", unit_key=key + "x", request_id=RID)
    out += aggregate.on_failure(step.request, None, f, 2).events
    return out


def test_progress_then_completion_with_a_failure() -> None:
    r = WaitResult()
    evs = events()
    assert [e["event"] for e in evs] == ["progress", "progress", "completed"]
    assert r.apply(evs[0]) and r.line() == "0 stored, 0 empty, 0 failed of 2 units, 0 ticks"
    assert r.apply(evs[1]) and not r.finished
    assert r.apply(evs[2]) and r.finished and r.complete
    assert (r.expected, r.stored, r.failed, r.ticks) == (2, 1, 1, 9)
    assert r.failures[0]["reason"] == "truncated"
    # After the completion nothing changes any more (a repeated completion, say).
    assert not r.apply(evs[2]) and not r.apply(evs[0])


def test_rejected_is_finished_but_not_complete() -> None:
    r = WaitResult()
    f = Failure("fetcher-planner", "unknown instrument 'NOPE'", "UnknownInstrumentError",
                request_id=RID)  # fmt: skip
    (event,) = aggregate.on_failure(None, None, f, 0).events
    assert r.apply(event)
    assert r.finished and not r.complete and r.rejected == "unknown instrument 'NOPE'"


def test_unknown_events_and_repeated_snapshots_are_ignored() -> None:
    r = WaitResult()
    assert not r.apply({"event": "something-new", "request_id": RID})
    snapshot = events()[1]
    assert r.apply(snapshot) and not r.apply(snapshot)
    assert r.events == 2 and not r.finished
    assert r.line().startswith("1 stored")


def test_progress_before_the_plan_shows_unknown_units() -> None:
    r = WaitResult()
    r.apply({"event": "progress", "request_id": RID, "units": None, "stored": 1, "empty": 0,
             "failed": 0, "ticks": 3})  # fmt: skip
    assert r.line() == "1 stored, 0 empty, 0 failed of ? units, 3 ticks"
