"""``tickpipe-api``: the HTTP API on ``TICKPIPE_API_PORT`` (8000), ``/metrics`` and
``/healthz`` on the metrics port (9106) like every tickpipe service."""

from __future__ import annotations

import asyncio

import structlog
import uvicorn
from tickpipe_shared.config import Settings, get_settings
from tickpipe_shared.logging import configure_logging
from tickpipe_shared.metrics import Health, start_http

from tickpipe_api.app import create_app
from tickpipe_api.settings import ApiSettings, get_api_settings

log = structlog.get_logger()


async def serve(settings: Settings, api: ApiSettings) -> None:
    """Serve the API until SIGTERM/SIGINT (uvicorn's graceful shutdown: in-flight answers,
    streams included, finish first)."""
    health = Health()
    port = settings.port_for("api")
    http = await start_http(settings.metrics_host, port, health)
    log.info("metrics endpoint listening", port=port)
    try:
        config = uvicorn.Config(
            create_app(settings, api, health),
            host=api.host,
            port=api.port,
            log_config=None,
            access_log=False,  # tickpipe_api.accesslog logs every request, as JSON
            timeout_keep_alive=30,
            server_header=False,
        )
        log.info("api listening", port=api.port, auth=api.auth)
        await uvicorn.Server(config).serve()
    finally:
        await http.cleanup()


def main() -> None:
    """Console-script entry point."""
    settings = get_settings()
    configure_logging("api", settings.log_level)
    asyncio.run(serve(settings, get_api_settings()))
