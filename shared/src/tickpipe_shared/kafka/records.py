"""Records a stage produces, and the errors that steer the commit protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from tickpipe_shared.wire.headers import Headers


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to produce: full topic name, key, value and headers."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = field(default_factory=list)


class InRecord(Protocol):
    """The parts of :class:`aiokafka.ConsumerRecord` stages rely on."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any


class RetryableError(Exception):
    """A failure of the environment (database down, broker unreachable), not of the input.

    The runtime does not commit: it seeks back, waits with backoff and processes the same
    records again, so nothing is lost or written to failures because a dependency was down.
    """
