"""Fetcher-specific Prometheus metrics (the shared ones are in :mod:`tickpipe_shared.metrics`:
``tickpipe_units_total{stage="fetcher",outcome}`` counts units downloaded / empty /
suspect-empty / failed, ``tickpipe_units_total{stage="fetcher-planner",outcome}`` units planned /
skipped and requests rejected, and ``tickpipe_bytes_total{stage="fetcher",direction="in"}`` the
payload bytes published)."""

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "tickpipe_fetcher_http_requests_total",
    "HTTP requests to sources by source and status (or exception class)",
    ["source", "status"],
)
RETRIES_TOTAL = Counter("tickpipe_fetcher_retries_total", "Download retries by source", ["source"])
FETCH_LATENCY = Histogram(
    "tickpipe_fetcher_download_seconds",
    "Duration of a request (page or WebSocket call) that got an answer",
    ["source"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RESPONSE_BYTES = Counter(
    "tickpipe_fetcher_response_bytes_total",
    "Body bytes received from sources, whatever the answer (data, errors, HTML pages)",
    ["source"],
)
RATE_LIMIT_WAIT = Histogram(
    "tickpipe_fetcher_rate_limit_wait_seconds",
    "Time a request waited for its host's rate limiter (token or Retry-After pause)",
    ["host"],
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RATE_LIMIT_RATE = Gauge(
    "tickpipe_fetcher_rate_limit_rate",
    "Current adaptive request rate per second of this replica for a host",
    ["host"],
)
RATE_LIMIT_THROTTLED = Counter(
    "tickpipe_fetcher_throttled_total",
    "429/503 answers that slowed a host's rate limiter down",
    ["host"],
)
BREAKER_STATE = Gauge(
    "tickpipe_fetcher_breaker_state",
    "Circuit breaker state per host: 0 closed, 1 half-open, 2 open",
    ["host"],
)
BREAKER_TRANSITIONS = Counter(
    "tickpipe_fetcher_breaker_transitions_total",
    "Circuit breaker transitions per host, by the state entered",
    ["host", "state"],
)
BREAKER_WAIT = Histogram(
    "tickpipe_fetcher_breaker_wait_seconds",
    "Time a unit waited for an open (or probing) circuit breaker",
    ["host"],
    buckets=(0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600),
)
