"""What every route needs, built once per process: settings, the database pool, auth and rate
limits, the answer cache and the ledger watch that keeps it honest, the request-events follower
and the publisher."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
from tickpipe_shared.config import Settings

from tickpipe_api.auth import Authenticator
from tickpipe_api.cache import AnswerCache
from tickpipe_api.events import RequestEvents
from tickpipe_api.ledger_watch import LedgerWatch
from tickpipe_api.publisher import Publisher
from tickpipe_api.ratelimit import RateLimiter
from tickpipe_api.settings import ApiSettings


@dataclass
class Context:
    """Process-wide state of the API (``app.state.ctx``)."""

    settings: Settings
    api: ApiSettings
    auth: Authenticator
    cache: AnswerCache
    events: RequestEvents
    publisher: Publisher
    watch: LedgerWatch
    timescaledb: bool = False
    _pool: asyncpg.Pool | None = field(default=None, repr=False)

    @property
    def pool(self) -> asyncpg.Pool:
        """The database pool (raises :class:`RuntimeError` before start-up finished)."""
        if self._pool is None:
            raise RuntimeError("database pool not started")
        return self._pool

    @classmethod
    def build(cls, settings: Settings, api: ApiSettings) -> Context:
        """A context for ``settings``; the pool is opened by the app's lifespan."""
        limiter = RateLimiter(api.rate_burst_s, api.replicas)
        ctx: Context
        auth = Authenticator(
            lambda: ctx.pool, api.auth == "on", api.key_cache_s, limiter, api.rate_limit
        )
        cache = AnswerCache(api.cache_max_entries, api.cache_ttl_s, api.cache_max_entry_bytes)
        ctx = cls(
            settings=settings,
            api=api,
            auth=auth,
            cache=cache,
            events=RequestEvents(settings, api.requests_lookback_s),
            publisher=Publisher(settings),
            watch=LedgerWatch(settings, cache.forget),
        )
        return ctx
