"""Tracker-specific Prometheus metrics (the shared ones carry ``stage="tracker"``)."""

from prometheus_client import Counter, Gauge

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
OPEN_REQUESTS = Gauge(
    "tickpipe_tracker_open_requests",
    "Requests this tracker replica knows of that are neither completed nor rejected yet",
)
