"""Sources that send their own requests (the Deriv WebSocket), behind the :class:`Source`
interface.

Such a source gets a ``pace`` callable instead of :class:`~tickpipe_fetcher.sources.base.Requests`
and awaits it before every call it sends, so its calls pass the same admission as HTTP requests
(breaker wait, the host's token bucket, a download slot). Its answer carries the payload, an
empty flag, the first URL (without token) and the number of calls. The Deriv source
(:class:`~tickpipe_fetcher.sources.deriv.DerivSource`) is one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from tickpipe_shared.logging import scrub
from tickpipe_shared.wire.fetch_units import FetchUnit

from tickpipe_fetcher.sources.base import Answer, Requests


class PacedAnswer(Protocol):
    """What a paced source returns (e.g. ``DerivAnswer``)."""

    @property
    def body(self) -> bytes: ...
    @property
    def empty(self) -> bool: ...
    @property
    def url(self) -> str: ...
    @property
    def requests(self) -> int: ...


class PacedClient(Protocol):
    """A source that sends its own calls, awaiting ``pace()`` before each (e.g.
    ``DerivSource``). Raises :class:`~tickpipe_fetcher.http.RetryableFetchError` or
    :class:`~tickpipe_fetcher.http.PermanentFetchError`."""

    @property
    def name(self) -> str: ...
    @property
    def format(self) -> str: ...
    @property
    def host(self) -> str: ...

    async def fetch(
        self, unit: FetchUnit, now_ms: int, pace: Callable[[], Awaitable[None]]
    ) -> PacedAnswer: ...

    async def close(self) -> None: ...


class PacedSource:
    """Adapts a :class:`PacedClient` to :class:`~tickpipe_fetcher.sources.base.Source`: its
    answers become :class:`Answer` with status 200 and content type ``application/json``."""

    def __init__(self, client: PacedClient) -> None:
        self.client = client
        self.name = client.name
        self.host = client.host

    async def fetch(self, unit: FetchUnit, now_ms: int, requests: Requests) -> Answer:
        """Run the client's fetch with ``requests.pace`` as its admission."""
        got = await self.client.fetch(unit, now_ms, requests.pace)
        return Answer(
            body=got.body,
            empty=got.empty,
            url=scrub(got.url),
            status=200,
            content_type="application/json",
            format=self.client.format,
            requests=got.requests,
        )

    async def close(self) -> None:
        """Close the client's connections."""
        await self.client.close()
