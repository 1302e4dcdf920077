"""tickpipe Market Data API: ticks, candles, coverage and fetch requests over HTTP (FastAPI)."""
