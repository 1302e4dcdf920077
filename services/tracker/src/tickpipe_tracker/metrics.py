"""Tracker-specific Prometheus metrics (the shared ones carry ``stage="tracker"``)."""

from prometheus_client import Counter

INPUTS = Counter(
    "tickpipe_tracker_inputs_total",
    "Records folded into request state, by kind (planned, unit, failure) and effect "
    "(counted, duplicate, invalid, unattributed)",
    ["kind", "effect"],
)
REQUEST_EVENTS = Counter(
    "tickpipe_tracker_request_events_total",
    "Request events published, by event (progress, completed, rejected)",
    ["event"],
)
