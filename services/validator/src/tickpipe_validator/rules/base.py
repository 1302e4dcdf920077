"""What a rule is."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.columns import Ticks
from tickpipe_shared.instruments.schedule import TradingSchedule
from tickpipe_shared.wire.batch import BatchMeta

ACTIONS = ("flag", "drop", "reject")


@dataclass(frozen=True, slots=True)
class RuleParams:
    """What a rule may need besides the batch: its configured ``threshold`` (``None``: the
    rule's default) and the instrument's trading ``schedule`` (``None``: unknown)."""

    threshold: float | None = None
    schedule: TradingSchedule | None = None


class Check(Protocol):
    """A rule's pure function: a boolean mask of shape ``(N,)``, True where a tick violates the
    rule. ``params`` may be omitted (defaults, no schedule)."""

    def __call__(
        self, ticks: Ticks, meta: BatchMeta, params: RuleParams | None = None, /
    ) -> NDArray[np.bool_]: ...


@dataclass(frozen=True, slots=True)
class Threshold:
    """A rule's configurable number: ``default``, accepted range ``[minimum, maximum]``,
    ``unit`` (for messages and docs), and whether it must be a whole number."""

    default: float
    minimum: float
    maximum: float
    unit: str
    integer: bool = False

    def check(self, rule: str, value: float) -> float:
        """``value`` if acceptable; raises :class:`ValueError` naming the rule and range."""
        ok = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and self.minimum <= value <= self.maximum
            and (not self.integer or float(value).is_integer())
        )
        if not ok:
            kind = "a whole number" if self.integer else "a number"
            raise ValueError(
                f"threshold of rule {rule!r} must be {kind} in [{self.minimum:g}, "
                f"{self.maximum:g}] ({self.unit}), got {value!r}"
            )
        return float(value)


def threshold_of(params: RuleParams | None, default: float) -> float:
    """The configured threshold, or ``default``."""
    if params is None or params.threshold is None:
        return default
    return params.threshold


@dataclass(frozen=True, slots=True)
class Rule:
    """A data-quality rule.

    ``bit``: its bit in the uint16 ``flags`` column (``flags & (1 << bit)``). ``action``: the
    default action. ``allowed``: actions that make sense (a tick outside its unit cannot be
    kept: the writer replaces units by time window). ``check``: the pure function.
    ``threshold``: the configurable number, if the rule has one.
    """

    name: str
    bit: int
    action: str
    check: Check
    description: str
    allowed: tuple[str, ...] = ACTIONS
    threshold: Threshold | None = None

    @property
    def mask(self) -> int:
        """The rule's bit as an integer mask."""
        return 1 << self.bit
