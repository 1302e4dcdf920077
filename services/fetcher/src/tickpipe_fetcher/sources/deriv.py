"""Deriv WebSocket API: ticks and ``mid`` candles of a unit through ``ticks_history``.

Spec: ``../shared/docs/deriv.md`` (§2 request, §3 replies, §4 paging, §5 errors, §6 keep-alive).
One unit is asked as the window ``[unit start, last whole second of the unit]`` in seconds (for
a unit still open at ``now``: up to ``now``), ``count`` = ``TICKPIPE_DERIV_PAGE_COUNT``. The
server answers the *newest* ``count`` items of the window, so a full page is followed by the
page ending one second before its oldest item, until a page is not full or reaches the start.

The payload (format ``deriv-ticks-history``) is ``b"[" + b",".join(replies) + b"]"``: the text
of every page's reply untouched, newest page first. Nothing is parsed here beyond the epochs
paging needs (integers or digit strings: 2018-era servers sent strings); decoding, sorting and
de-duplicating are the decoder's job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tickpipe_shared.config import Settings
from tickpipe_shared.kinds import Kind, KindError
from tickpipe_shared.wire.fetch_units import FetchUnit

from tickpipe_fetcher.http import PermanentFetchError, RetryableFetchError, ThrottledFetchError
from tickpipe_fetcher.ratelimit import host_of
from tickpipe_fetcher.ws import ConnectFactory, JsonWebSocket, Requester, aiohttp_connector

#: Error codes another attempt will not change (deriv.md §5): a bad request, symbol or
#: credentials.
PERMANENT_CODES = frozenset(
    {
        "InputValidationFailed",
        "InvalidSymbol",
        "InvalidAppID",
        "InvalidToken",
        "AuthorizationRequired",
        "PermissionDenied",
        "UnrecognisedRequest",
    }
)
#: Reply ``msg_type`` of each style (deriv.md §3: ticks answer ``history``).
REPLY_TYPES = {"ticks": "history", "candles": "candles"}


@dataclass(frozen=True, slots=True)
class DerivAnswer:
    """A unit's download. ``body``: the raw payload, ``b"[" + b",".join(reply_texts) + b"]"``
    (UTF-8; every page's reply text untouched, in the order fetched; ``b"[]"`` when no page
    was asked because the unit starts after ``now``). ``empty``: no page had any tick or candle.
    ``url``: the WebSocket URL asked (with ``app_id``, never the token). ``requests``: the
    ``ticks_history`` calls made."""

    body: bytes
    empty: bool
    url: str
    requests: int


class RateLimitedError(ThrottledFetchError):
    """Deriv answered ``RateLimit``: the fetcher should slow down for this host, not only retry."""


class MarketClosedError(RetryableFetchError):
    """Deriv answered ``MarketIsClosed``: retried when the trading schedule has the unit open
    (a holiday the schedule does not know, or a glitch), an empty unit otherwise."""


def ws_url(base: str, app_id: str) -> str:
    """``base`` with ``app_id`` set in its query (other parameters kept, in order)."""
    parts = urlsplit(base)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "app_id"]
    query.append(("app_id", app_id))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _epoch(value: object) -> int:
    """An epoch in seconds as sent: an integer, an integral float or a digit string."""
    if isinstance(value, bool):
        raise ValueError(f"epoch {value!r} is a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise ValueError(f"epoch {value!r} is not a whole number of seconds")


def page_epochs(data: Mapping[str, Any], style: str) -> list[int]:
    """The epochs (s) of a ``history`` (``history.times``) or ``candles`` (``candles[].epoch``)
    reply, in reply order. Raises :class:`ValueError` saying what is malformed."""
    if style == "ticks":
        history = data.get("history")
        if not isinstance(history, dict):
            raise ValueError("'history' is missing or not an object")
        times = history.get("times")
        if not isinstance(times, list):
            raise ValueError("'history.times' is missing or not an array")
        return [_epoch(t) for t in times]
    candles = data.get("candles")
    if not isinstance(candles, list):
        raise ValueError("'candles' is missing or not an array")
    out = []
    for i, candle in enumerate(candles):
        if not isinstance(candle, dict) or "epoch" not in candle:
            raise ValueError(f"candles[{i}] is not an object with an 'epoch'")
        out.append(_epoch(candle["epoch"]))
    return out


class DerivSource:
    """The Deriv source (deriv.md). ``connect`` opens the WebSocket (tests pass a fake; default:
    aiohttp, through the proxy configured for ``deriv``). One socket per instance, shared by
    concurrent :meth:`fetch` calls, opened lazily and reopened after a drop; when
    ``deriv_token`` is set each new socket first sends ``authorize``.

    Raises :class:`ValueError` when ``deriv_url`` is not configured.
    """

    name = "deriv"
    format = "deriv-ticks-history"

    def __init__(self, settings: Settings, connect: ConnectFactory | None = None) -> None:
        if not settings.deriv_url:
            raise ValueError("TICKPIPE_DERIV_URL is not set: the deriv source needs its URL")
        self.url = ws_url(settings.deriv_url, settings.deriv_app_id)
        self.host = host_of(settings.deriv_url)
        self.page_count = settings.deriv_page_count
        # Kept as a SecretStr so that no repr of the source shows it.
        self._token = settings.deriv_token if settings.deriv_token else None
        if connect is None:
            proxy = settings.http_proxy_by_source.get(self.name, settings.http_proxy)
            connect = aiohttp_connector(settings, proxy or None)
        self._socket = JsonWebSocket(
            self.url,
            connect,
            reply_timeout_s=settings.fetch_read_timeout_s,
            connect_timeout_s=settings.fetch_connect_timeout_s,
            ping_interval_s=settings.deriv_ping_interval_s,
            on_open=self._authorize if self._token else None,
        )

    @property
    def connections(self) -> int:
        """WebSocket connections opened so far."""
        return self._socket.connections

    async def close(self) -> None:
        """Close the WebSocket; fetches still waiting fail retryably."""
        await self._socket.close()

    def request_for(self, unit: FetchUnit, now_ms: int) -> dict[str, Any] | None:
        """The first page's ``ticks_history`` request of ``unit`` (no ``req_id``), or ``None``
        when the unit starts after ``now_ms`` (nothing to ask yet).

        Raises :class:`PermanentFetchError` for a kind Deriv does not serve (a side other than
        ``mid``, a calendar timeframe) or a malformed kind.
        """
        try:
            kind = Kind.parse(unit.unit.kind)
        except KindError as exc:
            raise PermanentFetchError(f"unit {unit.unit.key}: {exc}") from None
        request: dict[str, Any] = {"ticks_history": unit.source_code}
        if kind.is_candles:
            assert kind.timeframe is not None
            seconds = kind.timeframe.seconds
            if kind.side != "mid" or seconds is None:
                raise PermanentFetchError(
                    f"unit {unit.unit.key}: deriv serves mid candles of a fixed granularity in "
                    f"seconds, not {unit.unit.kind!r}"
                )
            request.update(style="candles", granularity=seconds)
        else:
            request["style"] = "ticks"
        start_s = -(-unit.unit.start_ms // 1000)
        # The last whole second inside [start, end): a tick at the unit's end belongs to the next.
        end_s = -(-unit.unit.end_ms // 1000) - 1
        if unit.unit.end_ms > now_ms:
            end_s = min(end_s, now_ms // 1000)
        if end_s < start_s:
            return None
        request.update(start=start_s, end=str(end_s), count=self.page_count)
        return request

    async def fetch(
        self, unit: FetchUnit, now_ms: int, pace: Callable[[], Awaitable[None]]
    ) -> DerivAnswer:
        """Download ``unit`` page by page, newest first, awaiting ``pace()`` before every
        ``ticks_history`` call.

        Raises :class:`RetryableFetchError` (:class:`RateLimitedError` for ``RateLimit``) for a
        dropped socket, no reply in time, a malformed reply, ``MarketIsClosed`` in a unit the
        trading schedule has open (``market_open`` True; in a closed or unknown period it ends
        the unit: empty, or the pages so far) and error codes not known to be permanent;
        :class:`PermanentFetchError` for the codes of :data:`PERMANENT_CODES`, an unsupported
        kind, or more full pages than the window can hold at one tick per second or one candle
        per bucket (a server ignoring ``end``).
        Messages name the unit, symbol and error code.
        """
        request = self.request_for(unit, now_ms)
        if request is None:
            return DerivAnswer(b"[]", True, self.url, 0)
        start_s = int(request["start"])
        end_s = int(request["end"])
        step_s = int(request.get("granularity", 1))
        # At most one tick per whole second (times are whole seconds), one candle per bucket.
        max_pages = ((end_s - start_s) // step_s + 1) // self.page_count + 2
        pages: list[bytes] = []
        empty = True
        while True:
            if len(pages) >= max_pages:
                raise PermanentFetchError(
                    f"{self._what(unit, request)}: still full pages after {len(pages)} pages of "
                    f"{self.page_count}, more than the window can hold; the server ignores 'end'?"
                )
            await pace()
            reply = await self._socket.request(request, self._what(unit, request))
            try:
                epochs = self._check(unit, request, reply.data)
            except MarketClosedError:
                if unit.market_open is True:
                    raise
                # A closed period (or no schedule known): the source says there is nothing
                # here, so the unit is empty (the pages so far, if any, are its data).
                break
            pages.append(reply.text.encode())
            if not epochs:
                break
            empty = False
            oldest = min(epochs)
            if len(epochs) < self.page_count or oldest <= start_s:
                break
            end_cur = int(request["end"])
            if oldest > end_cur:
                raise RetryableFetchError(
                    f"{self._what(unit, request)}: a full page whose oldest item ({oldest}) is "
                    f"after the requested end: cannot page backwards"
                )
            request = {**request, "end": str(oldest - 1)}
        return DerivAnswer(b"[" + b",".join(pages) + b"]", empty, self.url, len(pages))

    def _what(self, unit: FetchUnit, request: Mapping[str, Any]) -> str:
        granularity = f" granularity {request['granularity']}" if "granularity" in request else ""
        return (
            f"deriv ticks_history {request['ticks_history']} {request['style']}{granularity} "
            f"[{request['start']}, {request['end']}] for unit {unit.unit.key}"
        )

    def _check(
        self, unit: FetchUnit, request: Mapping[str, Any], data: Mapping[str, Any]
    ) -> list[int]:
        """The page's epochs; raises for an error reply or a malformed one."""
        what = self._what(unit, request)
        if "error" in data:
            raise self._error(what, data["error"])
        style = str(request["style"])
        expected = REPLY_TYPES[style]
        if data.get("msg_type") != expected:
            raise RetryableFetchError(
                f"{what}: reply msg_type {data.get('msg_type')!r}, expected {expected!r}"
            )
        try:
            return page_epochs(data, style)
        except ValueError as exc:
            raise RetryableFetchError(f"{what}: malformed {expected} reply: {exc}") from None

    def _error(self, what: str, error: object) -> Exception:
        """The exception for an ``error`` object (deriv.md §5)."""
        if not isinstance(error, dict):
            return RetryableFetchError(
                f"{what}: malformed error reply: {self._redact(repr(error))}"
            )
        code = str(error.get("code", "?"))
        message = self._redact(str(error.get("message", "")))
        details = error.get("details")
        text = f"{what}: {code}: {message}"
        if isinstance(details, dict) and details:
            text += f" ({self._redact(', '.join(f'{k}: {v}' for k, v in details.items()))})"
        if code == "RateLimit":
            return RateLimitedError(text)
        if code == "MarketIsClosed":
            # deriv.md §5: not an outage; the request never subscribes, so the advice (ask again
            # without subscribe) is a later attempt of the same request.
            return MarketClosedError(f"{text} (market closed; asked without subscribe)")
        if code in PERMANENT_CODES:
            return PermanentFetchError(text)
        return RetryableFetchError(text)

    def _redact(self, text: str) -> str:
        token = self._token.get_secret_value() if self._token else ""
        return text.replace(token, "***") if token else text

    async def _authorize(self, request: Requester) -> None:
        """Send ``authorize`` with the token on a new socket (deriv.md §1)."""
        assert self._token is not None
        token = self._token.get_secret_value()
        reply = await request({"authorize": token}, f"deriv authorize on {self.host}")
        if "error" in reply.data:
            raise self._error(f"deriv authorize on {self.host}", reply.data["error"])
        if reply.data.get("msg_type") != "authorize":
            raise RetryableFetchError(
                f"deriv authorize on {self.host}: reply msg_type {reply.data.get('msg_type')!r}"
            )
