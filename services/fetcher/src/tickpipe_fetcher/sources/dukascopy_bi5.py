"""Dukascopy legacy datafeed: one LZMA-compressed ``.bi5`` file per hour of ticks.

Spec: ``../shared/docs/dukascopy.md`` §2. URL: ``{base}/{SYMBOL}/{YYYY}/{MM}/{DD}/{HH}h_ticks.bi5``
with a **zero-based** two-digit month (``2019/01/04`` is 4 February 2019). A closed hour is a
0-byte file; an hour before the instrument's history start answers 404: both are empty units.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tickpipe_shared.wire.fetch_units import FetchUnit

from tickpipe_fetcher.http import HttpResponse, RetryableFetchError
from tickpipe_fetcher.sources.base import Outcome
from tickpipe_fetcher.sources.common import check_length, check_not_html, check_status

#: First byte of every LZMA-alone stream the datafeed served: properties lc=3, lp=0, pb=2.
LZMA_PROPERTIES = 0x5D


class DukascopyBi5:
    """The legacy datafeed source; ``base_url`` ends with ``/datafeed``."""

    name = "dukascopy-bi5"
    format = "dukascopy-bi5-ticks"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def url_for(self, unit: FetchUnit, now_ms: int) -> str:
        """The hour file's URL (zero-based month)."""
        t = datetime.fromtimestamp(unit.start_ms / 1000, tz=UTC)
        return (
            f"{self.base_url}/{unit.source_code}/{t.year:04d}/{t.month - 1:02d}/{t.day:02d}/"
            f"{t.hour:02d}h_ticks.bi5"
        )

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
