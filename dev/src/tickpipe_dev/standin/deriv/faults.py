"""The faults the stand-in injects into ``ticks_history`` and the calls it counts."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tickpipe_dev.standin.control import updated


@dataclass
class DerivFaults:
    """Faults on ``ticks_history`` calls. Per call, in order: wait ``delay_ms`` (+ uniform
    ``jitter_ms``); then drop the connection without answering (``drop_next`` > 0 counts down,
    else with probability ``p_drop``), or answer ``RateLimit`` (``rate_limit_next`` > 0 counts
    down, else with probability ``p_rate_limit``), or answer ``MarketIsClosed``
    (``market_closed_next`` > 0 counts down). Random draws use a RNG seeded with ``seed``."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    p_rate_limit: float = 0.0
    p_drop: float = 0.0
    rate_limit_next: int = 0
    drop_next: int = 0
    market_closed_next: int = 0
    seed: int = 0

    def validate(self) -> None:
        """Raise :class:`ValueError` for an out-of-range setting."""
        for name in ("p_rate_limit", "p_drop"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        for name in ("delay_ms", "jitter_ms", "rate_limit_next", "drop_next", "market_closed_next"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def updated(self, changes: Mapping[str, Any]) -> DerivFaults:
        """A copy with ``changes`` applied; unknown keys or wrong types raise ValueError."""
        return updated(self, changes)


@dataclass
class DerivStats:
    """What the stand-in saw. ``calls``: count per call name (``ticks_history``, ``ping``,
    ``authorize``, ``unknown``); ``history``: one entry per ``ticks_history`` call (``t``: wall
    time s, ``symbol``, ``style``, ``granularity``, ``start``, ``end``, ``count``, ``outcome``:
    ``synthetic``, ``capture:<file>``, ``error:<code>`` or ``dropped``; ``items``)."""

    started: float = field(default_factory=time.time)
    connections: int = 0
    open_connections: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    history: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def reset(self) -> None:
        """Forget everything seen (open connections stay counted as open)."""
        self.started = time.time()
        self.connections = 0
        self.calls.clear()
        self.history.clear()
        self.max_in_flight = self.in_flight

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready snapshot."""
        return {
            "since": self.started,
            "connections": self.connections,
            "open_connections": self.open_connections,
            "calls": dict(self.calls),
            "max_in_flight": self.max_in_flight,
            "history": self.history,
        }
