"""Checks every HTTP source shares: status codes and answers that are not data."""

from __future__ import annotations

from tickpipe_fetcher.http import (
    HttpResponse,
    PermanentFetchError,
    RetryableFetchError,
    retry_after_seconds,
)

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
