"""Dukascopy JSON API (current): one JSON response per unit.

Spec: ``../shared/docs/dukascopy.md`` §3.1–3.3. Paths under ``{base}`` (``…/v1``), month
1-based and nothing zero-padded, side ``BID`` or ``ASK``:

* ticks of a closed hour: ``ticks/{CODE}/{Y}/{M}/{D}/{H}``;
* minute candles of a closed day: ``candles/minute/{CODE}/{SIDE}/{Y}/{M}/{D}``;
* hour candles of a closed month: ``candles/hour/{CODE}/{SIDE}/{Y}/{M}``;
* day candles of a closed year: ``candles/day/{CODE}/{SIDE}/{Y}``;
* the unit that contains "now" (still open): ``ticks/{CODE}?from={start ms}`` or
  ``candles/{minute|hour|day}/{CODE}/{SIDE}?from={start ms}``.

An empty bucket is a 200 JSON object with ``times: []`` (and null base prices): published as
served, and reported as an empty answer.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tickpipe_shared.wire.fetch_units import FetchUnit

from tickpipe_fetcher.http import HttpResponse, PermanentFetchError, RetryableFetchError
from tickpipe_fetcher.ratelimit import host_of
from tickpipe_fetcher.sources.base import Answer, Outcome, Requests
from tickpipe_fetcher.sources.common import (
    check_length,
    check_not_html,
    check_status,
    check_unit_span,
    fetch_one,
)
from tickpipe_fetcher.sources.dukascopy_kinds import dukascopy_kind

#: Bodies up to this size are parsed to tell an empty bucket (``times: []``) from data; an
#: empty bucket is ~180 bytes, any answer with data far more.
EMPTY_PROBE_BYTES = 4096


class DukascopyJson:
    """The JSON API source; ``base_url`` ends with ``/v1``."""

    name = "dukascopy-json"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.host = host_of(self.base_url)

    @staticmethod
    def format_for(kind: str) -> str:
        """``dukascopy-json-ticks`` or ``dukascopy-json-candles``."""
        return "dukascopy-json-candles" if dukascopy_kind(kind).candles else "dukascopy-json-ticks"

    def url_for(self, unit: FetchUnit, now_ms: int) -> str:
        """Closed-period URL, or the open-bucket form for the unit containing ``now_ms``.
        Raises :class:`~tickpipe_fetcher.http.PermanentFetchError` for a kind the API does not
        serve."""
        k = dukascopy_kind(unit.unit.kind)
        code = unit.source_code
        prefix = (
            f"{self.base_url}/candles/{k.period}/{code}/{k.side}"
            if k.candles
            else f"{self.base_url}/ticks/{code}"
        )
        if unit.unit.end_ms > now_ms:
            return f"{prefix}?from={unit.unit.start_ms}"
        t = datetime.fromtimestamp(unit.unit.start_ms / 1000, tz=UTC)
        if not k.candles:
            return f"{prefix}/{t.year}/{t.month}/{t.day}/{t.hour}"
        if k.timeframe == "1m":
            return f"{prefix}/{t.year}/{t.month}/{t.day}"
        if k.timeframe == "1h":
            return f"{prefix}/{t.year}/{t.month}"
        return f"{prefix}/{t.year}"

    def classify(self, url: str, response: HttpResponse) -> Outcome:
        """A JSON object with ``times``: data, or empty when ``times`` is ``[]``; 404 is
        permanent; anything else is retryable."""
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
            # Every tick and candle answer, empty buckets included, carries the columns: an
            # object without them is a glitch (an error object, a maintenance page in JSON).
            raise RetryableFetchError(
                f"JSON from {url} has no 'times' column: not a tick or candle answer "
                f"({body[:80]!r})"
            )
        if len(body) <= EMPTY_PROBE_BYTES:
            try:
                obj = json.loads(body)
            except ValueError as e:
                raise RetryableFetchError(f"malformed JSON from {url}: {e}") from None
            if not isinstance(obj, dict) or "times" not in obj:
                raise RetryableFetchError(f"JSON from {url} has no 'times' column ({body[:80]!r})")
            if obj["times"] == []:
                return Outcome.EMPTY
        return Outcome.DATA

    async def fetch(self, unit: FetchUnit, now_ms: int, requests: Requests) -> Answer:
        """One GET of the unit's endpoint; the body is published as served, empty or not."""
        check_unit_span(unit)
        url = self.url_for(unit, now_ms)
        return await fetch_one(
            requests, url, self.classify, self.format_for(unit.unit.kind), empty_body=False
        )

    async def close(self) -> None:
        """Nothing to release: requests go through the shared transport."""
