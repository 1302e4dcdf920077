"""Validator-specific Prometheus metrics."""

from prometheus_client import Counter

RULE_HITS = Counter(
    "tickpipe_validator_rule_hits_total",
    "Ticks or candles hit by a validation rule, by rule and instrument",
    ["rule", "instrument"],
)
# Ticks and candles passed on count in the shared ``tickpipe_ticks_total{stage="validator"}``
# and ``tickpipe_candles_total{stage="validator"}``.
