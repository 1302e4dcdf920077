"""Validation rules: one module per rule, each a pure function over tick columns.

A rule returns a boolean mask of shape ``(N,)``: True where a tick violates it. What happens to
those ticks is the rule's *action* (configurable): ``flag`` keeps them with the rule's bit set
in the ``flags`` column, ``drop`` removes them, ``reject`` sends the whole unit to failures.
Rules with a ``threshold`` read it (and, for ``gap``, the instrument's trading schedule) from
:class:`~tickpipe_validator.rules.base.RuleParams`. Candle checks (``candle_high_low``) are
plain functions: candles do not flow through the pipeline yet.
"""

from tickpipe_validator.rules.base import ACTIONS, Rule, RuleParams, Threshold
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
)

__all__ = ["ACTIONS", "RULES", "Rule", "RuleParams", "Threshold"]
