"""Failures (topic ``failures``): one JSON record per thing a stage could not do.

Nothing is dropped silently: a bad request, a unit that stayed unreachable after its last
attempt, a payload that does not decode or a unit the validator rejects each becomes one record
here, keyed like the record it is about, and the stage moves on.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from tickpipe_shared.logging import scrub


@dataclass(frozen=True, slots=True)
class Failure:
    """One failure.

    * ``stage``: what failed: ``fetcher-planner`` (a bad request), ``fetcher`` (a download),
      ``decoder``, ``validator``, ``writer``.
    * ``reason``: what was wrong and where, for a human.
    * ``error_class``: the exception class name, for grouping.
    * ``key``/``headers``/``topic``/``partition``/``offset``: the original record.
    * ``attempt``: attempts made (downloads) or 1.
    * ``unit_key``: the key of the failed record — a unit key, or for a bad request the
      request's key. ``request_id``: when known, to attribute it.
    """

    stage: str
    reason: str
    error_class: str
    key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    attempt: int = 1
    unit_key: str | None = None
    request_id: str | None = None
    at_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    schema: int = 1

    def to_json(self) -> bytes:
        """The record value (secrets scrubbed from the reason and headers)."""
        data = asdict(self)
        data["reason"] = scrub(self.reason)
        data["headers"] = {k: scrub(v) for k, v in self.headers.items()}
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, value: bytes) -> Failure:
        """Parse a record value. Raises :class:`ValueError` when it is not a failure record."""
        try:
            data: dict[str, Any] = json.loads(value)
            return cls(**data)
        except (TypeError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"not a failure record: {e}") from None
