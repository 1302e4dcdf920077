"""Process scaffolding every service shares: logging, the metrics endpoint, signals, runners."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import structlog

from tickpipe_shared.config import Settings, get_settings
from tickpipe_shared.logging import configure_logging
from tickpipe_shared.memory import bound_malloc
from tickpipe_shared.metrics import Health, start_http

log = structlog.get_logger()


class Runner(Protocol):
    """What a service runs: a :class:`~tickpipe_shared.kafka.runtime.StageRunner`, or a loop of
    its own shape (the fetcher's download pipeline)."""

    @property
    def stage(self) -> str: ...

    async def run(self) -> None: ...

    def stop(self) -> None: ...


Build = Callable[[Settings, Health], Awaitable[Sequence[Runner]]]


def _stop_all(runners: Sequence[Runner]) -> None:
    for r in runners:
        r.stop()


async def serve(service: str, build: Build, settings: Settings | None = None) -> None:
    """Run ``service``: serve ``/metrics`` and ``/healthz``, build its stage runners and run them
    until SIGTERM/SIGINT, then stop them after their current checkpoint.

    If one runner dies the others are stopped and the exception propagates (the process exits
    non-zero so a supervisor restarts it).
    """
    settings = settings or get_settings()
    health = Health()
    port = settings.port_for(service)
    http = await start_http(settings.metrics_host, port, health)
    log.info("metrics endpoint listening", port=port, kafka=settings.kafka_bootstrap)
    try:
        runners = await build(settings, health)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _stop_all, runners)
        tasks = [asyncio.create_task(r.run(), name=r.stage) for r in runners]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for r in runners:
            r.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        for t in done:
            if t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    finally:
        await http.cleanup()


def main(service: str, build: Build) -> None:
    """Console-script entry point: bound malloc's heap growth (:mod:`tickpipe_shared.memory`),
    configure JSON logging, then :func:`serve`."""
    bound_malloc()
    settings = get_settings()
    configure_logging(service, settings.log_level)
    asyncio.run(serve(service, build, settings))
