"""Decoder-specific Prometheus metrics."""

from prometheus_client import Counter

# Candles decoded and passed on count in the shared ``tickpipe_candles_total{stage="decoder"}``.
CANDLES_DROPPED = Counter(
    "tickpipe_decoder_candles_dropped_total",
    "Decoded candles not passed on, by reason: flat (zero-volume flat of a dense .bi5 file), "
    "open (period not closed when fetched)",
    ["reason"],
)
