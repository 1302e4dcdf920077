"""Validator-specific Prometheus metrics."""

from prometheus_client import Counter

RULE_HITS = Counter(
    "tickpipe_validator_rule_hits_total",
    "Ticks hit by a validation rule, by rule and instrument",
    ["rule", "instrument"],
)
