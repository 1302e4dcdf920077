"""What a rule is."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.candles import Candles
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
    """A rule's pure function over ticks: a boolean mask of shape ``(N,)``, True where a tick
    violates the rule. ``params`` may be omitted (defaults, no schedule)."""

    def __call__(
        self, ticks: Ticks, meta: BatchMeta, params: RuleParams | None = None, /
    ) -> NDArray[np.bool_]: ...


class CandleCheck(Protocol):
    """A rule's pure function over candles: a boolean mask of shape ``(N,)``, True where a
    candle violates the rule. ``params`` may be omitted (defaults)."""

    def __call__(
        self, candles: Candles, meta: BatchMeta, params: RuleParams | None = None, /
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
    """A data-quality rule: one concept, one name, one bit, for ticks and/or candles.

    ``bit``: its bit in the uint16 ``flags`` column of ticks and candles (``flags & (1 << bit)``).
    ``action``: the default action. ``allowed``: actions that make sense (a row outside its unit
    cannot be kept: the writer replaces units by time window). ``threshold``: the configurable
    number, if the rule has one. Action and threshold apply to ticks and candles alike.
    ``check`` / ``description``: the pure function over ticks and what a hit tick is (``None``:
    the rule does not apply to ticks); ``candle_check`` / ``candle_description``: the same for
    candles. Raises :class:`ValueError` when the rule has no check or a check lacks its
    description.
    """

    name: str
    bit: int
    action: str
    check: Check | None = None
    description: str = ""
    allowed: tuple[str, ...] = ACTIONS
    threshold: Threshold | None = None
    candle_check: CandleCheck | None = None
    candle_description: str = ""

    def __post_init__(self) -> None:
        if self.check is None and self.candle_check is None:
            raise ValueError(f"rule {self.name!r} checks neither ticks nor candles")
        if (self.check is not None and not self.description) or (
            self.candle_check is not None and not self.candle_description
        ):
            raise ValueError(f"rule {self.name!r} lacks the description of a hit row")

    @property
    def mask(self) -> int:
        """The rule's bit as an integer mask."""
        return 1 << self.bit
