"""Polygon (Massive) REST aggregates: a unit is one range of bars, fetched in pages.

Spec: ``../shared/docs/polygon.md``. First page::

    GET {base}/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from_ms}/{to_ms}
        ?adjusted=true&sort=asc&limit={TICKPIPE_POLYGON_PAGE_LIMIT}

``from_ms`` is the unit start and ``to_ms`` its end − 1 ms (Polygon's bounds are both
inclusive), the end extended to the end of the bar containing it when a bar straddles the unit's
end (:func:`bar_span_end`: no partial bar is stored); the timeframe gives multiplier and
timespan (``5m`` → ``5/minute``, ``1mo`` → ``1/month``). Further pages: the body's ``next_url``,
with its scheme and host replaced by the configured base (the recorded ``next_url`` names
api.polygon.io; the stand-in is elsewhere), until a page has none. The API key goes as
``Authorization: Bearer`` on every page, never in a URL. The raw payload is the JSON array of
the untouched page bodies, in order (``b"[" + b",".join(pages) + b"]"``, format
``polygon-aggs``); the unit is empty when no page has ``results`` (absent, ``null`` or ``[]``).

Errors (§5): 401/403 (``NOT_AUTHORIZED``) and 400 are permanent with the body's message; 429
(``Retry-After``), 408, 413, 499 and 5xx are retryable; so are HTML pages, truncated or
non-JSON bodies, and ``status`` values other than ``OK``/``DELAYED`` in a 200 (except
``NOT_AUTHORIZED``/``NOT_FOUND``, permanent).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import SecretStr
from tickpipe_shared.kinds import Kind, KindError
from tickpipe_shared.logging import REDACTED, scrub
from tickpipe_shared.wire.fetch_units import FetchUnit

from tickpipe_fetcher.http import (
    HttpResponse,
    PermanentFetchError,
    RetryableFetchError,
    retry_after_seconds,
)
from tickpipe_fetcher.ratelimit import host_of
from tickpipe_fetcher.sources.base import Answer, Requests
from tickpipe_fetcher.sources.common import check_length, check_not_html

#: Timeframe unit → Polygon ``timespan``.
TIMESPANS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month",
             "q": "quarter", "y": "year"}  # fmt: skip
#: Pages one unit may take; units are sized to fit one page (``unit_span``), so more means a
#: ``next_url`` that never ends.
MAX_PAGES = 100
#: ``status`` values of a usable page (``DELAYED``: data of a plan with delayed quotes).
OK_STATUSES = frozenset({"OK", "DELAYED"})
#: ``status`` values in a 200 that another attempt will not change.
PERMANENT_STATUSES = frozenset({"NOT_AUTHORIZED", "NOT_FOUND"})
#: Non-5xx statuses the official client retries (and 408, a timeout).
RETRYABLE_HTTP = frozenset({408, 413, 429, 499})
_MESSAGE_CHARS = 300


def polygon_range(kind: str) -> tuple[int, str]:
    """``candles:5m:trade`` → ``(5, "minute")``. Raises :class:`PermanentFetchError` for a
    kind Polygon aggregates do not serve (ticks, a side other than ``trade``)."""
    try:
        k = Kind.parse(kind)
    except KindError as e:
        raise PermanentFetchError(f"kind {kind!r}: {e}") from None
    if not k.is_candles or k.side != "trade" or k.timeframe is None:
        raise PermanentFetchError(f"kind {kind!r}: Polygon serves trade candles (aggregates) only")
    return k.timeframe.count, TIMESPANS[k.timeframe.unit]


def bar_span_end(kind: str, unit_end_ms: int) -> int:
    """Where to end the request of a unit ending at ``unit_end_ms`` (exclusive, ms).

    Polygon aggregates only the trades inside the asked range, so a bar that opens inside the
    unit but ends after it (a ``7m`` bar across midnight, a ``1w`` bar across the new year)
    would come back partial. When the unit's end is not on a bar boundary of a fixed timeframe
    (bars counted from the epoch), the request runs one bar further, to the end of the bar that
    contains the unit's end; the decoder drops the bars that open at or after ``unit_end_ms``.
    Calendar timeframes (``mo``, ``q``, ``y``) end with their month or year units.
    """
    k = Kind.parse(kind)
    bar = k.timeframe.duration_ms if k.timeframe is not None else None
    if bar is None or unit_end_ms % bar == 0:
        return unit_end_ms
    return unit_end_ms - unit_end_ms % bar + bar


@dataclass(frozen=True, slots=True)
class Page:
    """What one page says: whether it has bars, and the next page's URL as given."""

    has_results: bool
    next_url: str | None


class PolygonSource:
    """The aggregates source. ``api_key``: sent as a Bearer token (None: no header, for a
    stand-in without auth); ``page_limit``: the ``limit`` query value."""

    name = "polygon"
    format = "polygon-aggs"

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | None = None,
        page_limit: int = 50_000,
        max_pages: int = MAX_PAGES,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.host = host_of(self.base_url)
        self.page_limit = page_limit
        self.max_pages = max_pages
        self._key = api_key.get_secret_value() if api_key is not None else ""

    def url_for(self, unit: FetchUnit) -> str:
        """The first page's URL: the unit's ``[start, end)`` as inclusive ms bounds, the end
        extended to :func:`bar_span_end` so that the unit's last bar is asked for its whole
        span (the decoder keeps only the bars that open inside the unit)."""
        u = unit.unit
        multiplier, timespan = polygon_range(u.kind)
        ticker = quote(unit.source_code, safe=":.-_~")
        end = bar_span_end(u.kind, u.end_ms)
        return (
            f"{self.base_url}/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/"
            f"{u.start_ms}/{end - 1}?adjusted=true&sort=asc&limit={self.page_limit}"
        )

    def follow(self, next_url: str) -> str:
        """``next_url`` on the configured base: its scheme and host (and any base path prefix)
        replace the ones it names; path and query (the opaque cursor) are kept."""
        n, b = urlsplit(next_url), urlsplit(self.base_url)
        path = n.path if n.path.startswith("/") else f"/{n.path}"
        return urlunsplit((b.scheme, b.netloc, b.path.rstrip("/") + path, n.query, ""))

    def _headers(self) -> Mapping[str, str] | None:
        return {"Authorization": f"Bearer {self._key}"} if self._key else None

    def _redact(self, text: str) -> str:
        """``text`` from a response body, with the key masked should the server echo it."""
        return text.replace(self._key, REDACTED) if self._key else text

    def _message(self, body: bytes) -> tuple[str, str]:
        """(``status``, ``message`` or ``error``) of a JSON error body, else ("", "")."""
        try:
            obj = json.loads(body[:65536])
        except ValueError:
            return "", ""
        if not isinstance(obj, dict):
            return "", ""
        text = obj.get("message") or obj.get("error") or ""
        return str(obj.get("status") or ""), self._redact(str(text))[:_MESSAGE_CHARS]

    def read_page(self, url: str, response: HttpResponse) -> Page:
        """Judge one page: raises the fetch errors of the module docstring, else returns it."""
        status = response.status
        if status != 200:
            body_status, text = self._message(response.body)
            detail = f" {body_status}" if body_status else ""
            message = f"HTTP {status}{detail} from {url}" + (f": {text}" if text else "")
            if status in RETRYABLE_HTTP or status >= 500:
                retry_after = retry_after_seconds(response.headers.get("retry-after"))
                raise RetryableFetchError(message, retry_after=retry_after)
            if status == 401:
                message += " (check TICKPIPE_POLYGON_API_KEY)"
            raise PermanentFetchError(message)
        check_not_html(url, response)
        check_length(url, response)
        body = response.body.strip()
        if not body:
            raise RetryableFetchError(f"empty body from {url} (expected a JSON object)")
        try:
            obj = json.loads(body)
        except ValueError as e:
            raise RetryableFetchError(
                f"not JSON or truncated from {url} ({len(body)} bytes): {e}"
            ) from None
        if not isinstance(obj, dict):
            raise RetryableFetchError(f"not a JSON object from {url}: {body[:40]!r}")
        page_status = obj.get("status")
        if page_status not in OK_STATUSES:
            _, text = self._message(body)
            message = f"status {page_status!r} from {url}" + (f": {text}" if text else "")
            if page_status in PERMANENT_STATUSES:
                raise PermanentFetchError(message)
            raise RetryableFetchError(message)
        results = obj.get("results")
        if results is not None and not isinstance(results, list):
            raise RetryableFetchError(f"'results' from {url} is not a list: {results!r:.60}")
        next_url = obj.get("next_url")
        if next_url is not None and not isinstance(next_url, str):
            raise RetryableFetchError(f"'next_url' from {url} is not a string: {next_url!r:.60}")
        return Page(bool(results), next_url or None)

    async def fetch(self, unit: FetchUnit, now_ms: int, requests: Requests) -> Answer:
        """Every page of the unit (``now_ms`` is not needed: an open range is asked as is and
        refetched by a later request). Raises :class:`PermanentFetchError` after
        :data:`MAX_PAGES` pages or when a ``next_url`` repeats."""
        first = url = self.url_for(unit)
        headers = self._headers()
        seen = {url}
        pages: list[bytes] = []
        has_results = False
        content_type = ""
        status = 200
        while True:
            response = await requests.get(url, headers)
            page = self.read_page(url, response)
            pages.append(response.body)
            content_type = content_type or response.content_type
            status = response.status
            has_results = has_results or page.has_results
            if page.next_url is None:
                break
            if len(pages) >= self.max_pages:
                raise PermanentFetchError(
                    f"more than {self.max_pages} pages from {scrub(first)}: next_url keeps coming"
                )
            url = self.follow(page.next_url)
            if url in seen:
                raise PermanentFetchError(f"next_url repeats {url}: the pages loop")
            seen.add(url)
        return Answer(
            body=b"[" + b",".join(pages) + b"]",
            empty=not has_results,
            url=scrub(first),
            status=status,
            content_type=content_type,
            format=self.format,
            requests=len(pages),
        )

    async def close(self) -> None:
        """Nothing to release: requests go through the shared transport."""
