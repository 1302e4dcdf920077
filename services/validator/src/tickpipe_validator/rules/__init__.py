"""Validation rules: one module per rule, each a pure function over tick or candle columns.

A rule returns a boolean mask of shape ``(N,)``: True where a tick (candle) violates it. What
happens to those rows is the rule's *action* (configurable): ``flag`` keeps them with the rule's
bit set in the ``flags`` column, ``drop`` removes them, ``reject`` sends the whole unit to
failures. A rule checks ticks (``Rule.check``), candles (``Rule.candle_check``) or both under one
name, bit, action and threshold. Rules with a ``threshold`` read it (and, for ``gap``, the
instrument's trading schedule) from :class:`~tickpipe_validator.rules.base.RuleParams`.
"""

from tickpipe_validator.rules.aligned_start import ALIGNED_START
from tickpipe_validator.rules.base import ACTIONS, CandleCheck, Check, Rule, RuleParams, Threshold
from tickpipe_validator.rules.candle_high_low import CANDLE_HIGH_LOW
from tickpipe_validator.rules.crossed_quote import CROSSED_QUOTE
from tickpipe_validator.rules.duplicate import DUPLICATE
from tickpipe_validator.rules.gap import GAP
from tickpipe_validator.rules.inside_unit import INSIDE_UNIT
from tickpipe_validator.rules.non_decreasing import NON_DECREASING
from tickpipe_validator.rules.non_negative_volume import NON_NEGATIVE_VOLUME
from tickpipe_validator.rules.positive_price import POSITIVE_PRICE
from tickpipe_validator.rules.price_spike import PRICE_SPIKE
from tickpipe_validator.rules.spread_outlier import SPREAD_OUTLIER
from tickpipe_validator.rules.stale_run import STALE_RUN

#: Every rule, in evaluation order. Bits are part of the stored data: never reuse one.
RULES: tuple[Rule, ...] = (
    INSIDE_UNIT,
    NON_DECREASING,
    POSITIVE_PRICE,
    CROSSED_QUOTE,
    NON_NEGATIVE_VOLUME,
    DUPLICATE,
    SPREAD_OUTLIER,
    PRICE_SPIKE,
    STALE_RUN,
    GAP,
    CANDLE_HIGH_LOW,
    ALIGNED_START,
)
#: The rules that check ticks, and those that check candles.
TICK_RULES: tuple[Rule, ...] = tuple(r for r in RULES if r.check is not None)
CANDLE_RULES: tuple[Rule, ...] = tuple(r for r in RULES if r.candle_check is not None)

__all__ = [
    "ACTIONS",
    "CANDLE_RULES",
    "RULES",
    "TICK_RULES",
    "CandleCheck",
    "Check",
    "Rule",
    "RuleParams",
    "Threshold",
]
