"""Request events (topic ``request-events``, published by the tracker;
``docs/topics/request-events.md``) folded into the latest state of a request, and request
cancellations (topic ``request-cancellations``, published by ``tickpipe requests cancel``).

One fold for every reader (the API's ``GET /v1/requests/{id}``, ``tickpipe requests
list|show``): ``progress`` snapshots replace the counts, ``completed`` and ``rejected`` end the
request; events after the end are ignored.
"""

from __future__ import annotations

import json
import time
from typing import Any

#: The counts a request event carries.
COUNTS = ("units", "stored", "empty", "suspect_empty", "failed", "cancelled", "skipped", "ticks")

#: ``error_class`` of the failure record of a unit skipped because its request was cancelled;
#: the tracker counts such units as ``cancelled``, not ``failed``.
CANCELLED_ERROR_CLASS = "RequestCancelledError"


class RequestCancelledError(Exception):
    """A unit (or request) was not processed because its request was cancelled."""


def fold(state: dict[str, Any] | None, event: dict[str, Any]) -> dict[str, Any] | None:
    """``state`` (``None`` for a new request) with ``event`` folded in; ``None`` when the event
    is unknown or the request had already ended."""
    kind = event.get("event")
    if kind not in ("progress", "completed", "rejected"):
        return None
    if state is not None and state["status"] in ("completed", "rejected"):
        return None
    out: dict[str, Any] = dict(state or {"status": "running", "failures": [], "reason": None})
    out["updated_ms"] = event.get("at_ms")
    if kind == "rejected":
        out["status"] = "rejected"
        out["reason"] = str(event.get("reason", "rejected"))
        out["error_class"] = event.get("error_class")
        return out
    for name in COUNTS:
        value = event.get(name)
        if isinstance(value, int) or (name == "units" and value is None and name not in out):
            out[name] = value
    notes = event.get("notes")
    if isinstance(notes, list):
        out["notes"] = [str(n) for n in notes]
    if kind == "completed":
        out["status"] = "completed"
        failures = event.get("failures")
        out["failures"] = [f for f in failures if isinstance(f, dict)] if failures else []
        for name in ("source", "instrument", "kind", "started_ms"):
            out[name] = event.get(name)
    return out


def encode_cancellation(request_id: str, at_ms: int | None = None) -> bytes:
    """The record value of a cancellation of ``request_id`` (JSON, keyed by request id)."""
    at = at_ms if at_ms is not None else int(time.time() * 1000)
    return json.dumps(
        {"schema": 1, "event": "cancelled", "request_id": request_id, "at_ms": at},
        separators=(",", ":"),
    ).encode()


def decode_cancellation(value: bytes | None) -> str | None:
    """The request id a cancellation record cancels, or ``None`` for anything else."""
    try:
        data = json.loads(value or b"")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("event") != "cancelled":
        return None
    rid = data.get("request_id")
    return rid if isinstance(rid, str) and rid else None
