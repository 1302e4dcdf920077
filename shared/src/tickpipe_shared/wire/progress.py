"""Request progress (topic ``progress``): what happened to each request's units, keyed by
request id so that everything about one request lands in one partition.

Two events, JSON, ``"event"`` telling them apart:

* ``planned`` — published by the fetcher's planner once per request it accepted: how many units
  it split the request into. ::

    {"schema": 1, "event": "planned", "request_id": "…", "source": "dukascopy-bi5",
     "instrument": "EURUSD", "kind": "ticks", "units": 48, "at_ms": 1795433060196}

* ``unit`` — published by the writer for every unit it finished (after the database commit,
  before the offset commit: at-least-once, so a unit may be reported twice). ::

    {"schema": 1, "event": "unit", "request_id": "…", "unit_key": "dukascopy-bi5|EURUSD|ticks|…",
     "instrument": "EURUSD", "outcome": "stored", "rows": 5321, "at_ms": 1795433060196}

Units that fail (download, decode, validation) are reported on the failures topic instead, with
their ``request_id``. The tracker aggregates all three into request events (``request-events``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class RequestPlanned:
    """A request was accepted and split into ``units`` units of work."""

    request_id: str
    source: str
    instrument: str
    kind: str
    units: int
    #: Units left out because the ingest log already has them (``skip_existing``); not in
    #: ``units`` and never reported by the writer.
    skipped: int = 0
    #: What the plan had to do without, in words (e.g. planned without the instrument detail:
    #: default schedule, no history clamp); carried into the request events.
    notes: list[str] = field(default_factory=list)
    at_ms: int = field(default_factory=_now_ms)
    event: Literal["planned"] = "planned"
    schema: int = 1


@dataclass(frozen=True, slots=True)
class UnitFinished:
    """A unit of a request is in the database: ``outcome`` ``stored`` (rows > 0), ``empty`` or
    ``suspect-empty`` (no rows although the market was open, see the ingest log)."""

    request_id: str
    unit_key: str
    instrument: str
    outcome: Literal["stored", "empty", "suspect-empty"]
    rows: int
    at_ms: int = field(default_factory=_now_ms)
    event: Literal["unit"] = "unit"
    schema: int = 1


ProgressEvent = RequestPlanned | UnitFinished


def encode_progress(event: ProgressEvent) -> bytes:
    """The record value of an event."""
    return json.dumps(asdict(event), separators=(",", ":")).encode()


def decode_progress(value: bytes) -> ProgressEvent:
    """Parse a record value. Raises :class:`ValueError` naming what is wrong."""
    try:
        data: dict[str, Any] = json.loads(value)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"progress event is not valid JSON: {e}") from None
    kind = data.get("event") if isinstance(data, dict) else None
    try:
        if kind == "planned":
            return RequestPlanned(**data)
        if kind == "unit":
            return UnitFinished(**data)
    except TypeError as e:
        raise ValueError(f"invalid {kind!r} progress event: {e}") from None
    raise ValueError(f"unknown progress event {kind!r}")
