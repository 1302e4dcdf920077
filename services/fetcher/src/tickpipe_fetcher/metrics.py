"""Fetcher-specific Prometheus metrics (the shared ones are in :mod:`tickpipe_shared.metrics`)."""

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "tickpipe_fetcher_http_requests_total",
    "HTTP requests to sources by source and status (or exception class)",
    ["source", "status"],
)
RETRIES_TOTAL = Counter("tickpipe_fetcher_retries_total", "Download retries by source", ["source"])
FETCH_LATENCY = Histogram(
    "tickpipe_fetcher_download_seconds",
    "Duration of a successful download attempt",
    ["source"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
