"""Dukascopy JSON API (current): one JSON response per hour of ticks.

Spec: ``../shared/docs/dukascopy.md`` §3. URL of a closed hour:
``{base}/ticks/{CODE}/{Y}/{M}/{D}/{H}`` with a 1-based month and nothing zero-padded; the hour
that contains "now" is still open and is asked as ``{base}/ticks/{CODE}?from={hour start ms}``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tickpipe_shared.wire.fetch_units import FetchUnit

from tickpipe_fetcher.http import HttpResponse, PermanentFetchError, RetryableFetchError
from tickpipe_fetcher.sources.base import Outcome
from tickpipe_fetcher.sources.common import check_length, check_not_html, check_status


class DukascopyJson:
    """The JSON API source; ``base_url`` ends with ``/v1``."""

    name = "dukascopy-json"
    format = "dukascopy-json-ticks"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def url_for(self, unit: FetchUnit, now_ms: int) -> str:
        """Closed-hour URL, or the open-bucket form for the hour containing ``now_ms``."""
        if unit.end_ms > now_ms:
            return f"{self.base_url}/ticks/{unit.source_code}?from={unit.start_ms}"
        t = datetime.fromtimestamp(unit.start_ms / 1000, tz=UTC)
        return f"{self.base_url}/ticks/{unit.source_code}/{t.year}/{t.month}/{t.day}/{t.hour}"

    def classify(self, url: str, response: HttpResponse) -> Outcome:
        """200 with a JSON object is data (the decoder judges emptiness); 404 is permanent."""
        check_status(url, response)
        if response.status == 404:
            raise PermanentFetchError(f"HTTP 404 from {url}: unknown instrument code or path")
        check_not_html(url, response)
        check_length(url, response)
        body = response.body.strip()
        if not body:
            # The API answers empty buckets with a JSON object; a 0-byte 200 is not an answer.
            raise RetryableFetchError(f"empty body from {url} (expected a JSON object)")
        if not body.startswith(b"{"):
            raise RetryableFetchError(f"not JSON from {url}: body starts with {body[:40]!r}")
        if not body.endswith(b"}"):
            raise RetryableFetchError(f"truncated JSON from {url}: body ends with {body[-40:]!r}")
        if b'"times"' not in body:
            # Every tick answer, empty buckets included, carries the columns: an object without
            # them is a glitch (an error object, a maintenance page in JSON), worth another try.
            raise RetryableFetchError(
                f"JSON from {url} has no 'times' column: not a tick answer ({body[:80]!r})"
            )
        return Outcome.DATA
