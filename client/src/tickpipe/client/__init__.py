"""Python client of the tickpipe Market Data API."""
