"""Repeated data queries answered from the answer cache before routing (pure ASGI middleware).

A ``GET /v1/ticks`` or ``/v1/candles`` request that an earlier request already got a cached
answer for (:meth:`tickpipe_api.cache.AnswerCache.known`) is answered here: the key is checked
and counted against its rate limit exactly as on the routed path
(:meth:`tickpipe_api.auth.Authenticator.authenticate`), ``If-None-Match`` gives a 304, and the
stored body goes out with the stored headers. No database round trip, no parameter parsing:
what makes this safe is that the ledger watch is listening, so a write to a covered unit has
already made the cache forget the request. Everything else goes on to the routes.
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from tickpipe_api import metrics
from tickpipe_api.cache import etag_matches, request_key
from tickpipe_api.context import Context
from tickpipe_api.problems import Problem, problem_response

#: Paths whose answers are cached (the data routes).
CACHED_PATHS = frozenset({"/v1/ticks", "/v1/candles"})
#: Headers a 304 leaves out (RFC 9110 §15.4.5: it describes the cached 200, without a body).
_NOT_IN_304 = frozenset({b"content-type", b"content-length"})
_HIT = metrics.CACHE.labels("hit")
_NOT_MODIFIED = metrics.CACHE.labels("304")


@lru_cache(maxsize=64)
def _rows(route: str, fmt: str) -> Any:
    """The rows-served counter of ``route`` and ``fmt`` (``labels()`` locks on every call)."""
    return metrics.ROWS.labels(route, fmt)


class ServeCached:
    """Wraps the routed app; answers known repeated data queries itself."""

    def __init__(self, app: ASGIApp, ctx: Context) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = self.ctx
        if (
            scope["type"] != "http"
            or scope.get("method") != "GET"
            or scope.get("path") not in CACHED_PATHS
            or not ctx.watch.live
        ):
            await self.app(scope, receive, send)
            return
        hit = ctx.cache.known(request_key(scope))
        if hit is None:
            await self.app(scope, receive, send)
            return
        known, cached = hit
        # The access log labels the request by its route, as if routed.
        scope["route"] = SimpleNamespace(path=scope["path"])
        request = Request(scope, receive)
        try:
            await ctx.auth.authenticate(request, "read")
        except Problem as problem:
            await problem_response(problem)(scope, receive, send)
            return
        if etag_matches(request.headers.get("if-none-match"), known.etag):
            _NOT_MODIFIED.inc()
            headers = [h for h in known.headers if h[0] not in _NOT_IN_304]
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        _HIT.inc()
        _rows(known.route, known.fmt).inc(cached.rows)
        await send({"type": "http.response.start", "status": 200, "headers": list(known.headers)})
        await send({"type": "http.response.body", "body": cached.body})
