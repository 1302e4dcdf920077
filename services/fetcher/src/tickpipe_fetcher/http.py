"""HTTP for the fetcher: an injectable transport, and downloads with retries and backoff.

Sources never open sockets themselves: they get a :class:`Transport`. Production uses
:class:`AiohttpTransport`; tests pass a fake that returns recorded responses, so every source
adapter is tested without a network.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
from tickpipe_shared.config import Settings
from tickpipe_shared.logging import scrub


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete response: status, lower-cased headers, body bytes."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower case (``""`` when absent)."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


class Transport(Protocol):
    """Performs one GET with optional extra request ``headers`` (e.g. ``Authorization``).
    Raises :class:`aiohttp.ClientError` or :class:`TimeoutError` on network failures; any HTTP
    status is a response, not an exception."""

    async def get(self, url: str, headers: Mapping[str, str] | None = None) -> HttpResponse: ...


class AiohttpTransport:
    """:class:`Transport` over one shared :class:`aiohttp.ClientSession`.

    Timeouts (seconds): connect, socket read and total per request, from settings. The body is
    read whole; a connection dropped before ``Content-Length`` bytes arrived raises
    :class:`aiohttp.ClientPayloadError` (retryable), and the sources check the length again.
    ``proxies`` maps URL prefixes (a source's base URL) to a proxy overriding
    ``TICKPIPE_HTTP_PROXY``; ``""`` means a direct connection.
    """

    def __init__(self, settings: Settings, proxies: Mapping[str, str] | None = None) -> None:
        self._timeout = aiohttp.ClientTimeout(
            total=settings.fetch_total_timeout_s,
            sock_connect=settings.fetch_connect_timeout_s,
            sock_read=settings.fetch_read_timeout_s,
        )
        self._proxy = settings.http_proxy or None
        # URL prefix → proxy ("" = direct), longest prefix first.
        self._proxies = sorted((proxies or {}).items(), key=lambda kv: -len(kv[0]))
        self._session: aiohttp.ClientSession | None = None

    def proxy_for(self, url: str) -> str | None:
        """The proxy of the longest configured prefix of ``url``, else ``TICKPIPE_HTTP_PROXY``."""
        for prefix, proxy in self._proxies:
            if url.startswith(prefix):
                return proxy or None
        return self._proxy

    async def get(self, url: str, headers: Mapping[str, str] | None = None) -> HttpResponse:
        """GET ``url``; ``headers`` are added to the session's (they may carry credentials:
        they are never logged)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                headers={"User-Agent": "tickpipe/0.1 (+historical data collector)"},
                auto_decompress=True,
            )
        async with self._session.get(
            url, headers=dict(headers) if headers else None, proxy=self.proxy_for(url)
        ) as resp:
            body = await resp.read()
            return HttpResponse(resp.status, body, {k.lower(): v for k, v in resp.headers.items()})

    async def close(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts and exponential backoff with full jitter, in seconds."""

    attempts: int = 5
    base_s: float = 0.5
    max_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The configured policy."""
        return cls(
            settings.fetch_attempts, settings.fetch_backoff_base_s, settings.fetch_backoff_max_s
        )

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        Full jitter: uniform in ``[0, min(max_s, base_s × 2^(attempt-1))]``; a server's
        ``Retry-After`` is a lower bound.
        """
        ceiling = min(self.max_s, self.base_s * 2 ** (attempt - 1))
        delay = random.uniform(0, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_s))
        return delay


class RetryableFetchError(Exception):
    """An answer or network error worth another attempt (5xx, 429, HTML page, reset…)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(scrub(message))
        self.retry_after = retry_after


class ThrottledFetchError(RetryableFetchError):
    """The host said "too many requests" without an HTTP 429 (e.g. a WebSocket ``RateLimit``
    error): retried, and it slows the host's rate limiter down like a 429 — not a breaker
    failure."""


class PermanentFetchError(Exception):
    """An answer that another attempt will not change (e.g. 404 for a JSON API path)."""

    def __init__(self, message: str) -> None:
        super().__init__(scrub(message))


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a ``Retry-After`` header given in seconds (HTTP dates are ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


async def sleep(seconds: float) -> None:
    """Indirection so tests can patch waiting away."""
    await asyncio.sleep(seconds)
