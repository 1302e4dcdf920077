"""Prometheus metrics of the API (served on its metrics port, 9106 by default, with the shared
metrics of every tickpipe process)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "tickpipe_api_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
LATENCY = Histogram(
    "tickpipe_api_request_duration_seconds",
    "Time to the end of the answer (streams: to the last byte)",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
ROWS = Counter("tickpipe_api_rows_total", "Rows served", ["route", "format"])
BYTES = Counter("tickpipe_api_bytes_total", "Answer body bytes served", ["route", "format"])
CACHE = Counter("tickpipe_api_cache_total", "Answer cache lookups", ["result"])  # hit|miss|304
AUTH_FAILURES = Counter(
    "tickpipe_api_auth_failures_total", "Requests refused by authentication", ["reason"]
)
RATE_LIMITED = Counter("tickpipe_api_rate_limited_total", "Requests refused with 429")
REQUESTS_PUBLISHED = Counter(
    "tickpipe_api_fetch_requests_published_total", "Fetch requests published on Kafka"
)
