"""Dukascopy legacy datafeed: one LZMA-compressed ``.bi5`` file per unit.

Spec: ``../shared/docs/dukascopy.md`` §2.1. Paths under ``{base}/{SYMBOL}/``, with a
**zero-based** two-digit month (``2019/01/04`` is 4 February 2019) and two-digit day and hour:

* ticks, one UTC hour: ``{YYYY}/{MM}/{DD}/{HH}h_ticks.bi5``;
* minute candles, one UTC day: ``{YYYY}/{MM}/{DD}/{BID|ASK}_candles_min_1.bi5``;
* hour candles, one UTC month: ``{YYYY}/{MM}/{BID|ASK}_candles_hour_1.bi5``;
* day candles, one UTC year: ``{YYYY}/{BID|ASK}_candles_day_1.bi5``.

A closed hour is a 0-byte file; a period before the instrument's history start answers 404: both
are empty units, published as 0-byte payloads. The datafeed was never asked for a candle file of
a period still open (dukascopy-node descended to finer files); such a unit gets the same URL and
whatever the datafeed answers.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tickpipe_shared.wire.fetch_units import FetchUnit

from tickpipe_fetcher.http import HttpResponse, RetryableFetchError
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

#: First byte of every LZMA-alone stream the datafeed served: properties lc=3, lp=0, pb=2.
LZMA_PROPERTIES = 0x5D


class DukascopyBi5:
    """The legacy datafeed source; ``base_url`` ends with ``/datafeed``."""

    name = "dukascopy-bi5"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.host = host_of(self.base_url)

    @staticmethod
    def format_for(kind: str) -> str:
        """``dukascopy-bi5-ticks`` or ``dukascopy-bi5-candles``."""
        return "dukascopy-bi5-candles" if dukascopy_kind(kind).candles else "dukascopy-bi5-ticks"

    def url_for(self, unit: FetchUnit, now_ms: int) -> str:
        """The unit's file URL (zero-based month); the same for open and closed periods.
        Raises :class:`~tickpipe_fetcher.http.PermanentFetchError` for a kind the datafeed
        does not serve."""
        k = dukascopy_kind(unit.unit.kind)
        t = datetime.fromtimestamp(unit.unit.start_ms / 1000, tz=UTC)
        year = f"{self.base_url}/{unit.source_code}/{t.year:04d}"
        if not k.candles:
            return f"{year}/{t.month - 1:02d}/{t.day:02d}/{t.hour:02d}h_ticks.bi5"
        name = f"{k.side}_candles_{k.file_suffix}.bi5"
        if k.timeframe == "1m":
            return f"{year}/{t.month - 1:02d}/{t.day:02d}/{name}"
        if k.timeframe == "1h":
            return f"{year}/{t.month - 1:02d}/{name}"
        return f"{year}/{name}"

    def classify(self, url: str, response: HttpResponse) -> Outcome:
        """0-byte 200 or 404: empty; an LZMA stream: data; anything else: retryable."""
        check_status(url, response)
        if response.status == 404:
            return Outcome.EMPTY
        check_length(url, response)  # before the empty check: 0 of N bytes is a cut, not "empty"
        if not response.body:
            return Outcome.EMPTY
        check_not_html(url, response)
        ctype = response.content_type
        if ctype.startswith("text/") or ctype.endswith(("json", "xml")):
            raise RetryableFetchError(
                f"wrong content type {ctype} from {url} (expected a binary .bi5 file): "
                f"first bytes {response.body[:16]!r}"
            )
        if response.body[0] != LZMA_PROPERTIES:
            raise RetryableFetchError(
                f"not an LZMA stream from {url}: first bytes {response.body[:16]!r}"
            )
        return Outcome.DATA

    async def fetch(self, unit: FetchUnit, now_ms: int, requests: Requests) -> Answer:
        """One GET of the unit's file; an empty unit is a 0-byte payload."""
        check_unit_span(unit)
        url = self.url_for(unit, now_ms)
        return await fetch_one(
            requests, url, self.classify, self.format_for(unit.unit.kind), empty_body=True
        )

    async def close(self) -> None:
        """Nothing to release: requests go through the shared transport."""
