"""Writer-specific Prometheus metrics."""

from prometheus_client import Counter, Histogram

DB_WRITE_SECONDS = Histogram(
    "tickpipe_writer_transaction_seconds",
    "Duration of one database transaction (plan, delete, COPY, ingest log)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DUPLICATE_PARTS = Counter(
    "tickpipe_writer_duplicate_parts_total", "Batches skipped because the unit already had them"
)
ORPHAN_PARTS = Counter(
    "tickpipe_writer_orphan_parts_total",
    "Parts not stored because an earlier part of their payload is missing (unit left partial)",
)
DB_ERRORS = Counter(
    "tickpipe_writer_db_errors_total",
    "Failed write transactions by class (availability: retried indefinitely; persistent: "
    "retried a bounded number of times; data: the record goes to failures) and error",
    ["class", "error"],
)
# Source candles written to the candles table count in the shared
# ``tickpipe_candles_total{stage="writer"}``.
