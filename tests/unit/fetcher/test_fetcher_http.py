"""``tickpipe_fetcher.http``: retry policy, Retry-After parsing, response helpers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tickpipe_fetcher.http import (
    HttpResponse,
    PermanentFetchError,
    RetryableFetchError,
    RetryPolicy,
    retry_after_seconds,
)
from tickpipe_shared.config import Settings


@given(st.integers(1, 20), st.floats(0, 5), st.floats(0, 60))
def test_delay_within_full_jitter_bounds(attempt: int, base: float, cap: float) -> None:
    policy = RetryPolicy(attempts=5, base_s=base, max_s=cap)
    ceiling = min(cap, base * 2 ** (attempt - 1))
    for _ in range(5):
        assert 0 <= policy.delay(attempt) <= ceiling


def test_delay_grows_then_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tickpipe_fetcher.http.random.uniform", lambda a, b: b)  # upper bound
    p = RetryPolicy(attempts=10, base_s=0.5, max_s=3.0)
    assert [p.delay(a) for a in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_retry_after_is_a_lower_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tickpipe_fetcher.http.random.uniform", lambda a, b: a)  # lower bound: 0
    p = RetryPolicy(attempts=5, base_s=0.5, max_s=30.0)
    assert p.delay(1) == 0
    assert p.delay(1, retry_after=7.0) == 7.0
    # ... but never beyond the cap
    assert p.delay(1, retry_after=3600.0) == 30.0


@given(st.integers(1, 10), st.floats(0, 100))
def test_retry_after_bound_property(attempt: int, retry_after: float) -> None:
    p = RetryPolicy(attempts=5, base_s=0.5, max_s=30.0)
    d = p.delay(attempt, retry_after)
    assert min(retry_after, 30.0) <= d <= max(min(retry_after, 30.0), 30.0)


def test_from_settings() -> None:
    s = Settings(fetch_attempts=3, fetch_backoff_base_s=0.1, fetch_backoff_max_s=2.0)
    assert RetryPolicy.from_settings(s) == RetryPolicy(3, 0.1, 2.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("5", 5.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
    ],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value) == expected


def test_content_type() -> None:
    assert HttpResponse(200, b"", {"content-type": "Text/HTML; charset=UTF-8"}).content_type == (
        "text/html"
    )
    assert HttpResponse(200, b"").content_type == ""


def test_errors_scrub_their_message() -> None:
    e = RetryableFetchError("GET postgresql://a:b@c/d?token=t", retry_after=2)
    assert str(e) == "GET postgresql://a:***@c/d?token=***"
    assert e.retry_after == 2
    assert str(PermanentFetchError("x?apiKey=k")) == "x?apiKey=***"
