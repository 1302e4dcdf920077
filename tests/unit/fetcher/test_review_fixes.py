"""Regressions found in review: credentials in host labels, JSON objects that are not ticks."""

from __future__ import annotations

import pytest
from tickpipe_fetcher.http import HttpResponse, RetryableFetchError
from tickpipe_fetcher.ratelimit import host_of
from tickpipe_fetcher.sources.base import Outcome
from tickpipe_fetcher.sources.dukascopy_json import DukascopyJson


def test_host_of_drops_credentials_and_keeps_the_port() -> None:
    assert host_of("https://user:secret@Example.COM:8443/v1/ticks") == "example.com:8443"
    assert host_of("http://127.0.0.1:8765/datafeed/x") == "127.0.0.1:8765"
    assert "secret" not in host_of("https://user:secret@example.com/v1")


def test_json_object_without_tick_columns_is_retryable() -> None:
    source = DukascopyJson("http://h/v1")
    with pytest.raises(RetryableFetchError, match="no 'times' column"):
        source.classify("http://h/v1/ticks/X", HttpResponse(200, b"{}"))
    empty_bucket = b'{"timestamp":1,"multiplier":1e-5,"ask":null,"bid":null,"times":[]}'
    # An empty bucket is an answer ("no ticks"), not a glitch.
    assert source.classify("http://h/v1/ticks/X", HttpResponse(200, empty_bucket)) is Outcome.EMPTY
