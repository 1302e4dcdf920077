"""The interface every source implements: where a unit lives, and what an answer means."""

from __future__ import annotations

from enum import Enum
from typing import Protocol

from tickpipe_shared.wire.fetch_units import FetchUnit

from tickpipe_fetcher.http import HttpResponse


class Outcome(Enum):
    """What an HTTP answer means for a unit."""

    DATA = "data"  # a payload to publish (may still decode to zero ticks)
    EMPTY = "empty"  # the source says there is no data (closed market, before history)


class Source(Protocol):
    """A data source. ``name`` is the request's ``source`` field; ``format`` the raw payload's.

    :meth:`classify` raises :class:`~tickpipe_fetcher.http.RetryableFetchError` for answers
    that are not data (5xx, 429, HTML, truncated) and
    :class:`~tickpipe_fetcher.http.PermanentFetchError` for answers a retry will not change.
    """

    name: str
    format: str

    def url_for(self, unit: FetchUnit, now_ms: int) -> str:
        """The URL of ``unit``'s payload (``now_ms`` decides whether its period is still open)."""
        ...

    def classify(self, url: str, response: HttpResponse) -> Outcome:
        """Whether ``response`` is data, a genuine empty unit, or an error (raised)."""
        ...
