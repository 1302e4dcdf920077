"""Checks every HTTP source shares: status codes, answers that are not data, unit spans, and
the one-request download of the Dukascopy sources."""

from __future__ import annotations

from collections.abc import Callable

from tickpipe_shared.logging import scrub
from tickpipe_shared.units import ms_to_iso, plan_units
from tickpipe_shared.wire.fetch_units import FetchUnit

from tickpipe_fetcher.http import (
    HttpResponse,
    PermanentFetchError,
    RetryableFetchError,
    retry_after_seconds,
)
from tickpipe_fetcher.sources.base import Answer, Outcome, Requests

_HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body")
_CHALLENGE_MARKERS = (b"cf-chl", b"challenge-platform", b"attention required", b"just a moment")


def check_status(url: str, response: HttpResponse) -> None:
    """Raise for 429/5xx (retryable, honouring ``Retry-After``) and other non-200 answers
    (permanent). 404 is left to the caller, whose meaning differs per source."""
    status = response.status
    if status == 200 or status == 404:
        return
    if status == 429 or status == 408 or status >= 500:
        raise RetryableFetchError(
            f"HTTP {status} from {url}",
            retry_after=retry_after_seconds(response.headers.get("retry-after")),
        )
    raise PermanentFetchError(f"HTTP {status} from {url}")


def check_not_html(url: str, response: HttpResponse) -> None:
    """Raise a retryable error for HTML pages and Cloudflare-style challenges served as 200."""
    head = response.body[:512].lstrip().lower()
    if any(m in head for m in _CHALLENGE_MARKERS) or any(
        m in response.body[:4096].lower() for m in _CHALLENGE_MARKERS
    ):
        raise RetryableFetchError(f"anti-bot challenge page instead of data from {url}")
    if response.content_type == "text/html" or head.startswith(_HTML_MARKERS):
        raise RetryableFetchError(
            f"HTML page ({len(response.body)} bytes, content-type "
            f"{response.content_type or 'none'}) instead of data from {url}"
        )


def check_length(url: str, response: HttpResponse) -> None:
    """Raise a retryable error when the body is shorter than its ``Content-Length``."""
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) != len(response.body):
        raise RetryableFetchError(
            f"truncated body from {url}: {len(response.body)} of {declared} bytes"
        )


def check_unit_span(unit: FetchUnit) -> None:
    """Raise :class:`PermanentFetchError` unless ``unit`` is exactly one span of its kind (an
    hour of ticks, a day of minute candles …): a file-per-span source would otherwise answer for
    a different period than the unit claims."""
    u = unit.unit
    try:
        [expected] = plan_units(u.source, u.instrument, u.kind, u.start_ms, u.start_ms + 1)
    except ValueError as e:  # KindError is a ValueError
        raise PermanentFetchError(f"unit kind {u.kind!r}: {e}") from None
    if (expected.start_ms, expected.end_ms) != (u.start_ms, u.end_ms):
        raise PermanentFetchError(
            f"unit [{ms_to_iso(u.start_ms)}, {ms_to_iso(u.end_ms)}) is not one whole "
            f"{u.kind} unit (expected [{ms_to_iso(expected.start_ms)}, "
            f"{ms_to_iso(expected.end_ms)}))"
        )


async def fetch_one(
    requests: Requests,
    url: str,
    classify: Callable[[str, HttpResponse], Outcome],
    fmt: str,
    *,
    empty_body: bool,
) -> Answer:
    """One GET of ``url`` judged by ``classify``. ``empty_body``: publish an empty answer as a
    0-byte payload (the ``.bi5`` convention) rather than the body as served."""
    response = await requests.get(url)
    outcome = classify(url, response)
    empty = outcome is Outcome.EMPTY
    return Answer(
        body=b"" if empty and empty_body else response.body,
        empty=empty,
        url=scrub(url),
        status=response.status,
        content_type=response.content_type,
        format=fmt,
        requests=1,
    )
