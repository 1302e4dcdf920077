"""Tracker service entry point: ``progress`` + ``failures`` → ``request-events``."""

from __future__ import annotations

import asyncio
import signal

import structlog
from tickpipe_shared.config import Settings, get_settings
from tickpipe_shared.logging import configure_logging
from tickpipe_shared.metrics import Health, start_http

from tickpipe_tracker.app import STAGE, Tracker

log = structlog.get_logger()


async def serve(settings: Settings) -> None:
    """Serve ``/metrics`` + ``/healthz`` and run the faust app until SIGTERM/SIGINT.

    Exits with an exception (non-zero) when the faust app crashes, so a supervisor restarts it.
    """
    health = Health()
    port = settings.port_for(STAGE)
    http = await start_http(settings.metrics_host, port, health)
    log.info("metrics endpoint listening", port=port, kafka=settings.kafka_bootstrap)
    tracker = Tracker(settings, health)
    app = tracker.app
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
        log.info("tracker started", app_id=app.conf.id, partitions=settings.topic_partitions)
        stopped = asyncio.create_task(app.wait_until_stopped())
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({stopped, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopped.cancel()
        if app.crashed:
            raise RuntimeError(f"faust app crashed: {app.crash_reason!r}")
    finally:
        health.fail("stopping")
        await app.stop()
        await http.cleanup()


def main() -> None:
    """``tickpipe-tracker``."""
    settings = get_settings()
    configure_logging(STAGE, settings.log_level)
    asyncio.run(serve(settings))
