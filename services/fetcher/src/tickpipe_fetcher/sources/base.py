"""The interface every source implements: download one unit, say what the answer is.

A source turns a unit into one or more requests (pages) and returns an :class:`Answer`. It never
opens sockets or waits by itself: every request goes through the :class:`Requests` it is given
for the attempt, which admits the request (breaker, the host's rate limiter, a download slot)
and counts it. Retries are the downloader's: a source raises
:class:`~tickpipe_fetcher.http.RetryableFetchError` for answers that are not data (5xx, 429,
HTML, truncated, …) and :class:`~tickpipe_fetcher.http.PermanentFetchError` for answers a retry
will not change; network errors from the transport propagate unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from tickpipe_shared.wire.fetch_units import FetchUnit

from tickpipe_fetcher.http import HttpResponse


class Outcome(Enum):
    """What one HTTP answer means for a unit."""

    DATA = "data"  # a payload to publish (may still decode to zero rows)
    EMPTY = "empty"  # the source says there is no data (closed market, before history)


@dataclass(frozen=True, slots=True)
class Answer:
    """A source's answer for one unit.

    ``body``: the raw payload to publish (the untouched response body, or for paged sources the
    JSON array of untouched page bodies); ``empty``: the source said "no data" for the unit;
    ``url``: the first URL asked, credentials scrubbed; ``status`` and ``content_type``: of the
    answer (HTTP; WebSocket sources report 200 and ``application/json``); ``format``: the raw
    payload format (``docs/topics/raw-payloads.md``); ``requests``: requests made for it.
    """

    body: bytes
    empty: bool
    url: str
    status: int
    content_type: str
    format: str
    requests: int


class Requests(Protocol):
    """How a source reaches its host during one attempt. Each call is one request: it waits
    for the host's circuit breaker and rate limiter and takes a download slot first.
    Both raise :class:`~tickpipe_fetcher.breaker.CircuitOpenError` when the unit waited its
    whole breaker budget."""

    async def get(self, url: str, headers: Mapping[str, str] | None = None) -> HttpResponse:
        """GET ``url`` (``headers`` may carry credentials: never logged)."""
        ...

    async def pace(self) -> None:
        """Admission for a request the source sends itself (WebSocket calls): await it before
        every call; the slot is held until the next :meth:`pace` or the end of the attempt."""
        ...


class Source(Protocol):
    """A data source. ``name`` is the request's ``source`` field; ``host`` the host its
    requests go to (``host[:port]``: the key of rate limiters, breakers and per-host slots)."""

    name: str
    host: str

    async def fetch(self, unit: FetchUnit, now_ms: int, requests: Requests) -> Answer:
        """Download ``unit`` (``now_ms``: wall time, ms; decides whether its period is still
        open). Raises the fetch errors described in the module docstring."""
        ...

    async def close(self) -> None:
        """Release connections the source holds itself (most hold none)."""
        ...
