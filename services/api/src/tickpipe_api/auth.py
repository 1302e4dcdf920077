"""API keys on requests: who is asking, with which scopes, within which rate.

The key comes in ``X-API-Key`` or ``Authorization: Bearer <key>`` (never in the URL, never
logged). A missing, unknown or revoked key is 401, a key without the route's scope 403, a key
over its rate limit 429 (:mod:`tickpipe_api.ratelimit`). Verified keys are remembered for
``TICKPIPE_API_KEY_CACHE_S`` seconds (by the key's hash), which is also how long a revocation
may take to reach a replica. ``TICKPIPE_API_AUTH=off`` (local stack only) lets every request
through as ``local`` with every scope and no rate limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from cachetools import TTLCache
from fastapi import Request
from tickpipe_shared.db.api_keys import ApiKey, hash_key, touch, verify

from tickpipe_api import metrics
from tickpipe_api.problems import Problem
from tickpipe_api.ratelimit import RateLimiter

#: ``last_used_at`` is written at most this often per key (seconds).
TOUCH_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is from: ``key_id`` (``local`` with auth off), name, scopes, rate."""

    key_id: str
    name: str
    scopes: tuple[str, ...]
    rate: float | None

    def allows(self, scope: str) -> bool:
        """True when the principal has ``scope`` (``admin`` has all)."""
        return scope in self.scopes or "admin" in self.scopes


LOCAL = Principal("local", "local (auth off)", ("admin",), None)


def _unauthorized(detail: str, reason: str) -> Problem:
    metrics.AUTH_FAILURES.labels(reason).inc()
    return Problem(
        401,
        "unauthorized",
        "Unauthorized",
        detail,
        "X-API-Key",
        headers={"WWW-Authenticate": 'Bearer realm="tickpipe"'},
    )


def key_of(request: Request) -> str | None:
    """The key a request presents: ``X-API-Key``, else ``Authorization: Bearer``."""
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


class Authenticator:
    """Verifies keys against ``api_keys`` (through ``pool()``), with a short-lived cache."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        enabled: bool,
        cache_s: float,
        limiter: RateLimiter,
        default_rate: float,
    ) -> None:
        self.pool = pool
        self.enabled = enabled
        self.limiter = limiter
        self.default_rate = default_rate
        self._cache: TTLCache[str, ApiKey | None] | None = (
            TTLCache(10_000, cache_s) if cache_s > 0 else None
        )
        self._touched: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def lookup(self, key: str) -> ApiKey | None:
        """The stored row of ``key`` (revoked or not), ``None`` when unknown."""
        digest = hash_key(key)
        if self._cache is not None and digest in self._cache:
            return self._cache[digest]
        found = await verify(self.pool(), key)
        if self._cache is not None:
            self._cache[digest] = found
        return found

    def _touch(self, key_id: str) -> None:
        now = time.monotonic()
        if now - self._touched.get(key_id, -TOUCH_EVERY_S) < TOUCH_EVERY_S:
            return
        self._touched[key_id] = now

        async def run() -> None:
            try:
                await touch(self.pool(), key_id)
            except (OSError, asyncpg.PostgresError):
                pass  # best effort: last_used_at is informational

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def authenticate(self, request: Request, scope: str) -> Principal:
        """The principal of ``request`` if it may use ``scope``; raises 401/403/429
        :class:`Problem` otherwise. Rate-limit headers are left in ``request.state``."""
        if not self.enabled:
            principal = LOCAL
        else:
            key = key_of(request)
            if key is None:
                raise _unauthorized("an API key is required (X-API-Key header)", "missing")
            stored = await self.lookup(key)
            if stored is None:
                raise _unauthorized("unknown API key", "unknown")
            if not stored.active:
                raise _unauthorized("this API key was revoked", "revoked")
            principal = Principal(stored.key_id, stored.name, stored.scopes, stored.rate_limit)
            self._touch(stored.key_id)
        request.state.principal = principal
        if not principal.allows(scope):
            metrics.AUTH_FAILURES.labels("scope").inc()
            raise Problem(
                403,
                "forbidden",
                "Forbidden",
                f"this API key lacks the {scope!r} scope (it has: {', '.join(principal.scopes)})",
                "X-API-Key",
                required_scope=scope,
            )
        if self.enabled:
            decision = self.limiter.check(principal.key_id, principal.rate or self.default_rate)
            request.state.rate_headers = decision.headers()
            if not decision.allowed:
                metrics.RATE_LIMITED.inc()
                raise Problem(
                    429,
                    "rate-limited",
                    "Too many requests",
                    f"rate limit of this API key exceeded; retry in {decision.retry_after_s} s",
                    headers=decision.headers(),
                )
        return principal


def require(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the request's :class:`Principal`, which must have ``scope``."""

    async def dependency(request: Request) -> Principal:
        auth: Authenticator = request.app.state.ctx.auth
        return await auth.authenticate(request, scope)

    dependency.__name__ = f"require_{scope}"
    return dependency
