"""WebSocket transport for the fetcher: one socket carrying JSON requests, replies routed by
``req_id``.

Used by the Deriv source (spec: ``../shared/docs/deriv.md`` §1, §5, §6). Sources never open
sockets themselves: they get a :data:`ConnectFactory`. Production uses
:func:`aiohttp_connector`; tests pass a fake :class:`WsConnection`, so the routing, keep-alive
and reconnect logic is tested without a network.

:class:`JsonWebSocket` keeps one connection, opened lazily on the first request and again on the
first request after it dropped. Every request gets a fresh integer ``req_id`` (never reused, not
even across reconnects, so a late reply to an abandoned request cannot be taken for another's);
replies to concurrent requests may arrive in any order. While the socket is idle a
``{"ping": 1}`` goes out every ``ping_interval_s`` so the server does not close it (Deriv closes
idle sockets after about two minutes). When the socket drops, every unanswered request fails
with a retryable error.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import structlog
from tickpipe_shared.config import Settings
from tickpipe_shared.logging import scrub

from tickpipe_fetcher.http import RetryableFetchError
from tickpipe_fetcher.ratelimit import host_of

log = structlog.get_logger()

#: Largest reply frame accepted (a 5000-candle page is about 0.5 MB).
MAX_FRAME_BYTES = 32 * 1024 * 1024
PING = json.dumps({"ping": 1})


class WsClosedError(Exception):
    """The connection is closed (by either side, or by a network error); the message says how."""


class WsConnection(Protocol):
    """One open WebSocket exchanging text frames."""

    async def send(self, text: str) -> None:
        """Send one text frame. Raises :class:`WsClosedError` when the socket is closed."""
        ...

    async def receive(self) -> str:
        """The next text frame. Raises :class:`WsClosedError` when the socket closed."""
        ...

    async def close(self) -> None:
        """Close the socket (idempotent)."""
        ...


#: Opens a connection to a URL. Raises :class:`aiohttp.ClientError`, :class:`OSError` or
#: :class:`TimeoutError` when it cannot.
ConnectFactory = Callable[[str], Awaitable[WsConnection]]


@dataclass(frozen=True, slots=True)
class WsReply:
    """A reply: its frame text exactly as received, and that text parsed (a JSON object)."""

    text: str
    data: dict[str, Any]


#: Sends one request on an open link and waits for its reply (used by ``on_open`` hooks).
Requester = Callable[[Mapping[str, Any], str], Awaitable[WsReply]]
#: Runs once on every new connection before any other request, e.g. to authorize.
OpenHook = Callable[[Requester], Awaitable[None]]


class AiohttpWsConnection:
    """:class:`WsConnection` over an aiohttp client WebSocket and its own session."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self._session = session
        self._ws = ws

    async def send(self, text: str) -> None:
        if self._ws.closed:
            raise WsClosedError("socket closed")
        try:
            await self._ws.send_str(text)
        except (aiohttp.ClientError, OSError, RuntimeError) as exc:
            raise WsClosedError(f"send failed: {type(exc).__name__}: {exc}") from None

    async def receive(self) -> str:
        while True:
            msg = await self._ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                return str(msg.data)
            if msg.type == aiohttp.WSMsgType.BINARY:
                # The API sends text; a binary frame is still JSON in UTF-8 if anything.
                return bytes(msg.data).decode("utf-8", errors="replace")
            if msg.type in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):
                continue
            if msg.type == aiohttp.WSMsgType.ERROR:
                raise WsClosedError(f"socket error: {self._ws.exception()!r}")
            code = self._ws.close_code
            raise WsClosedError(f"closed by the server (close code {code})")

    async def close(self) -> None:
        try:
            await self._ws.close()
        finally:
            await self._session.close()


def aiohttp_connector(settings: Settings, proxy: str | None = None) -> ConnectFactory:
    """The production :data:`ConnectFactory`: an aiohttp WebSocket per connection.

    Handshake timeout: ``settings.fetch_connect_timeout_s``; ``proxy`` (``None``: direct) is an
    HTTP proxy URL. Replies have no socket-level read timeout: :class:`JsonWebSocket` times out
    each request instead, so an idle socket stays open.
    """
    connect_s = settings.fetch_connect_timeout_s

    async def connect(url: str) -> WsConnection:
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=connect_s, sock_connect=connect_s),
            headers={"User-Agent": "tickpipe/0.1 (+historical data collector)"},
        )
        try:
            ws = await session.ws_connect(
                url,
                proxy=proxy,
                autoping=True,
                max_msg_size=MAX_FRAME_BYTES,
                timeout=aiohttp.ClientWSTimeout(ws_close=connect_s),
            )
        except BaseException:
            await session.close()
            raise
        return AiohttpWsConnection(session, ws)

    return connect


class _Link:
    """One open connection: its reader and keep-alive tasks and its unanswered requests."""

    def __init__(
        self,
        conn: WsConnection,
        where: str,
        ids: itertools.count[int],
        reply_timeout_s: float,
        ping_interval_s: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.conn = conn
        self.where = where
        self.ids = ids
        self.reply_timeout_s = reply_timeout_s
        self.ping_interval_s = ping_interval_s
        self.clock = clock
        self.sleep = sleep
        self.pending: dict[int, asyncio.Future[WsReply]] = {}
        self.closed = False
        self.last_sent = clock()
        self.tasks = (
            asyncio.create_task(self._read(), name=f"ws-read {where}"),
            asyncio.create_task(self._keepalive(), name=f"ws-ping {where}"),
        )

    async def send(self, text: str) -> None:
        if self.closed:
            raise WsClosedError("socket closed")
        self.last_sent = self.clock()
        await self.conn.send(text)

    async def request(self, payload: Mapping[str, Any], what: str) -> WsReply:
        req_id = next(self.ids)
        future: asyncio.Future[WsReply] = asyncio.get_running_loop().create_future()
        self.pending[req_id] = future
        try:
            try:
                await self.send(json.dumps({**payload, "req_id": req_id}))
            except WsClosedError as exc:
                await self.shut(f"send failed ({exc})")
                raise RetryableFetchError(
                    f"{what}: WebSocket to {self.where} closed before the request was sent: {exc}"
                ) from None
            try:
                async with asyncio.timeout(self.reply_timeout_s):
                    return await future
            except TimeoutError:
                raise RetryableFetchError(
                    f"{what}: no reply from {self.where} within {self.reply_timeout_s:g} s"
                ) from None
        finally:
            self.pending.pop(req_id, None)

    def _route(self, text: str) -> None:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            data = None
        if not isinstance(data, dict):
            # Cannot tell whose reply it was: every waiter would otherwise wait for its timeout.
            raise WsClosedError(f"received a frame that is not a JSON object ({len(text)} chars)")
        req_id = data.get("req_id")
        if isinstance(req_id, str) and req_id.isdigit():
            req_id = int(req_id)
        future = self.pending.get(req_id) if isinstance(req_id, int) else None
        if future is None:
            # Pongs, and late replies to requests that timed out.
            log.debug("ws_unrouted_reply", host=self.where, msg_type=data.get("msg_type"))
            return
        if not future.done():
            future.set_result(WsReply(text, data))

    async def _read(self) -> None:
        reason = "closed"
        try:
            while True:
                self._route(await self.conn.receive())
        except WsClosedError as exc:
            reason = str(exc)
        except asyncio.CancelledError:
            reason = "closed by the client"
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            self._fail(reason)
            self.tasks[1].cancel()
            await self._close_conn()

    async def _keepalive(self) -> None:
        while not self.closed:
            wait = self.ping_interval_s - (self.clock() - self.last_sent)
            if wait > 0:
                await self.sleep(wait)
                continue
            try:
                await self.send(PING)
            except WsClosedError:
                return

    def _fail(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            log.info(
                "ws_closed", host=self.where, reason=scrub(reason), unanswered=len(self.pending)
            )
        for future in self.pending.values():
            if not future.done():
                future.set_exception(
                    RetryableFetchError(
                        f"WebSocket to {self.where} dropped before the reply came: {reason}"
                    )
                )

    async def _close_conn(self) -> None:
        with contextlib.suppress(Exception):
            await self.conn.close()

    async def shut(self, reason: str) -> None:
        """Close the connection; unanswered requests fail retryably with ``reason``."""
        self._fail(reason)
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        for task in self.tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self._close_conn()


class JsonWebSocket:
    """JSON requests over one lazily (re)opened WebSocket, replies routed by ``req_id``.

    ``url`` may carry non-secret query parameters (it is logged scrubbed, as ``host[:port]``);
    ``reply_timeout_s`` bounds the wait for each reply (``on_open``'s too),
    ``connect_timeout_s`` the opening of a connection. ``on_open`` runs on every new connection
    before other requests (e.g. Deriv's ``authorize``); if it raises, the connection is closed
    and the exception reaches the request that opened it. ``clock`` (monotonic seconds) and
    ``sleep`` drive the keep-alive so tests can fake time.

    Errors from :meth:`request`: :class:`~tickpipe_fetcher.http.RetryableFetchError` when the
    connection cannot be opened, drops, or no reply comes in time; whatever ``on_open`` raises.
    """

    def __init__(
        self,
        url: str,
        connect: ConnectFactory,
        *,
        reply_timeout_s: float,
        connect_timeout_s: float,
        ping_interval_s: float,
        on_open: OpenHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.url = url
        self.where = host_of(url) or scrub(url)
        self._connect = connect
        self._reply_timeout_s = reply_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._ping_interval_s = ping_interval_s
        self._on_open = on_open
        self._clock = clock
        self._sleep = sleep
        self._ids = itertools.count(1)
        self._link: _Link | None = None
        self._lock = asyncio.Lock()
        self.connections = 0

    @property
    def connected(self) -> bool:
        """Whether a connection is open right now."""
        return self._link is not None and not self._link.closed

    async def request(self, payload: Mapping[str, Any], what: str) -> WsReply:
        """Send ``payload`` (a JSON object; ``req_id`` is added) and return its reply.

        ``what`` names the request in error messages (e.g. ``ticks_history R_50 …``); it must
        hold no secret. Raises as described in the class docstring.
        """
        link = await self._open()
        return await link.request(payload, what)

    async def _open(self) -> _Link:
        async with self._lock:
            if self._link is not None and not self._link.closed:
                return self._link
            try:
                async with asyncio.timeout(self._connect_timeout_s):
                    conn = await self._connect(self.url)
            except (aiohttp.ClientError, OSError, TimeoutError, WsClosedError) as exc:
                raise RetryableFetchError(
                    f"cannot open WebSocket to {self.where}: {type(exc).__name__}: {exc}"
                ) from None
            link = _Link(
                conn,
                self.where,
                self._ids,
                self._reply_timeout_s,
                self._ping_interval_s,
                self._clock,
                self._sleep,
            )
            self.connections += 1
            log.info("ws_connected", host=self.where, connection=self.connections)
            if self._on_open is not None:
                try:
                    await self._on_open(link.request)
                except BaseException:
                    await link.shut("the opening handshake failed")
                    raise
            self._link = link
            return link

    async def close(self) -> None:
        """Close the connection, if any; unanswered requests fail retryably."""
        async with self._lock:
            link, self._link = self._link, None
        if link is not None:
            await link.shut("closed by the client")
