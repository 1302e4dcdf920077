"""Validator-specific Prometheus metrics."""

from prometheus_client import Counter

RULE_HITS = Counter(
    "tickpipe_validator_rule_hits_total",
    "Ticks or candles hit by a validation rule, by rule and instrument",
    ["rule", "instrument"],
)
#: Candles passed on (ticks count in the shared ``tickpipe_ticks_total{stage="validator"}``).
CANDLES = Counter(
    "tickpipe_validator_candles_total", "Candles validated and passed on by the validator"
)
