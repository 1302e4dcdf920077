"""Access log and HTTP metrics, as pure ASGI middleware (it sees a stream to its last byte).

Each request gets a request id (the client's ``X-Request-ID`` when it sends a sane one, else a
random one), answered in ``X-Request-ID`` and bound to every log line of the request. One JSON
line per request when its answer ends: method, route, status, bytes, duration, key id. Keys are
never logged (they travel in headers, and headers are not logged); the query string is scrubbed.
The ``RateLimit-*`` headers the auth dependency computed are added to the answer here, so
errors carry them too.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from functools import lru_cache
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from tickpipe_shared.logging import scrub

from tickpipe_api import metrics
from tickpipe_api.formats import MEDIA_TYPES

log = structlog.get_logger("tickpipe_api.access")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    raw = str(scope.get("path", ""))
    if raw.startswith(("/dashboard", "/docs")):
        return "/" + raw.split("/")[1]
    return "unmatched"


class AccessLog:
    """Wraps an ASGI app: request id, access log line, request/latency/bytes metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _SANE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = [500]
        sent = [0]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                extra: list[tuple[bytes, bytes]] = [(b"x-request-id", request_id.encode())]
                rate: dict[str, str] = scope["state"].get("rate_headers") or {}
                existing = {k.lower() for k, _ in message.get("headers", [])}
                extra += [
                    (k.lower().encode(), v.encode())
                    for k, v in rate.items()
                    if k.lower().encode() not in existing
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            elif message["type"] == "http.response.body":
                sent[0] += len(message.get("body", b""))
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                self._record(scope, status[0], sent[0], time.perf_counter() - started)

    @staticmethod
    def _record(scope: Scope, status: int, sent: int, seconds: float) -> None:
        route = _route(scope)
        method = str(scope.get("method", ""))
        method = method if method in _METHODS else "other"
        query = scope.get("query_string", b"").decode("latin-1")
        fmt = "-"
        for part in query.split("&"):
            if part.startswith("format="):
                # Only known formats become label values: a client must not mint series.
                fmt = part[7:] if part[7:] in MEDIA_TYPES else "other"
        requests, latency, sent_bytes = _children(route, method, str(status), fmt)
        requests.inc()
        latency.observe(seconds)
        sent_bytes.inc(sent)
        if not log.is_enabled_for(logging.INFO):
            return
        principal: Any = scope["state"].get("principal")
        log.info(
            "request",
            method=method,
            path=str(scope.get("path", "")),
            query=scrub(query)[:500],
            route=route,
            status=status,
            bytes=sent,
            duration_ms=round(seconds * 1000, 2),
            key_id=getattr(principal, "key_id", None),
        )


@lru_cache(maxsize=4096)
def _children(route: str, method: str, status: str, fmt: str) -> tuple[Any, Any, Any]:
    """The metric children of one label combination (``labels()`` takes a lock each call)."""
    return (
        metrics.REQUESTS.labels(route, method, status),
        metrics.LATENCY.labels(route),
        metrics.BYTES.labels(route, fmt),
    )
