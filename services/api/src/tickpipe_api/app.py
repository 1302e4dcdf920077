"""The FastAPI application: routes, problem handlers, access log, dashboard, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from importlib import resources

import asyncpg
import structlog
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from tickpipe_shared.config import Settings
from tickpipe_shared.db.connect import connect, create_pool
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.logging import scrub
from tickpipe_shared.metrics import Health

from tickpipe_api.accesslog import AccessLog
from tickpipe_api.context import Context
from tickpipe_api.problems import (
    Problem,
    on_http_error,
    on_problem,
    on_unexpected,
    on_validation_error,
    problem_response,
)
from tickpipe_api.queries import is_timescaledb
from tickpipe_api.routes import data, meta, requests
from tickpipe_api.routes import health as health_routes
from tickpipe_api.serve_cached import ServeCached
from tickpipe_api.settings import ApiSettings

log = structlog.get_logger()

DESCRIPTION = """Ticks, candles and coverage of the tickpipe database, and fetch requests.

* Times: `start` inclusive, `end` exclusive; ISO 8601 (UTC; an offset is converted) or epoch
  milliseconds. Bars are labelled by their open time.
* Prices: exact decimals at the instrument's scale (strings in json unless
  `price_format=float`; decimal128 in Arrow/Parquet).
* Formats: `json` (pages with a `next` cursor), `ndjson`, `csv`, `arrow` (IPC stream),
  `parquet`; `format=` or the `Accept` header. `HEAD` or `count_only=true`: rows and size.
* Keys: `X-API-Key: <key>` or `Authorization: Bearer <key>`; scopes `read`, `request`, `admin`.
* Errors: `application/problem+json` (RFC 9457).
"""


async def _db_errors(_: object, exc: Exception) -> object:
    return problem_response(
        Problem(
            503,
            "database-unavailable",
            "Database unavailable",
            type(exc).__name__,
            headers={"Retry-After": "2"},
        )
    )


def create_app(settings: Settings, api: ApiSettings, health: Health | None = None) -> FastAPI:
    """The API for ``settings``/``api``. Its lifespan opens the database pool (retrying until
    the database answers; meanwhile data routes answer 503 and ``/readyz`` says why), applies
    pending migrations, and follows ``request-events``."""
    ctx = Context.build(settings, api)
    beat = health or Health()

    async def open_pool() -> None:
        delay = 0.5
        dsn = settings.database_url.get_secret_value()
        while True:
            try:
                conn = await connect(settings, timeout=10)
                try:
                    await migrate(conn)
                    ctx.timescaledb = await is_timescaledb(conn)
                finally:
                    await conn.close()
                ctx._pool = await create_pool(
                    settings, min_size=api.pool_min, max_size=api.pool_max, timeout=10
                )
                log.info("database pool ready", timescaledb=ctx.timescaledb)
                ctx.watch.start()
                return
            except (OSError, asyncpg.PostgresError, TimeoutError) as e:
                log.warning("database unreachable; retrying", dsn=scrub(dsn), error=str(e))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def beating() -> None:
        while True:
            beat.beat()
            await asyncio.sleep(5.0)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        opener = asyncio.create_task(open_pool())
        beater = asyncio.create_task(beating())
        ctx.events.start()
        try:
            await asyncio.wait({opener}, timeout=15)
            yield
        finally:
            for t in (opener, beater):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await ctx.events.stop()
            await ctx.watch.stop()
            await ctx.publisher.stop()
            if ctx._pool is not None:
                await ctx._pool.close()

    app = FastAPI(
        title="tickpipe Market Data API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        # Metrics are Prometheus (tickpipe_api_*); FastAPI's own OpenTelemetry hooks would cost
        # every request a provider check for nothing.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.ctx = ctx
    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    for exc in (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError):
        app.add_exception_handler(exc, _db_errors)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, on_unexpected)
    for router in (data.router, meta.router, requests.router, health_routes.router):
        app.include_router(router)
    static = resources.files("tickpipe_api") / "dashboard"
    app.mount("/dashboard", StaticFiles(directory=str(static), html=True), name="dashboard")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    # Added first = inside the access log: cached answers are logged and counted like others.
    app.add_middleware(ServeCached, ctx=ctx)
    app.add_middleware(AccessLog)
    return app
