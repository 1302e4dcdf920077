"""Prometheus metrics shared by every stage, and the ``/metrics`` + ``/healthz`` HTTP endpoint.

Metric names follow Prometheus conventions (``_total`` counters, ``_seconds`` histograms); the
``stage`` label is the service name so one Grafana panel can show the whole pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

UNITS = Counter(
    "tickpipe_units_total", "Units of work finished by a stage, by outcome", ["stage", "outcome"]
)
TICKS = Counter("tickpipe_ticks_total", "Ticks handled by a stage", ["stage"])
CANDLES = Counter("tickpipe_candles_total", "Candles handled by a stage", ["stage"])
BYTES = Counter("tickpipe_bytes_total", "Payload bytes handled by a stage", ["stage", "direction"])
ERRORS = Counter("tickpipe_errors_total", "Errors by stage and error class", ["stage", "error"])
RECORDS_CONSUMED = Counter(
    "tickpipe_records_consumed_total", "Kafka records consumed", ["stage", "topic"]
)
RECORDS_PRODUCED = Counter(
    "tickpipe_records_produced_total", "Kafka records produced", ["stage", "topic"]
)
COMMITS = Counter(
    "tickpipe_commits_total", "Offset commits after a successful checkpoint", ["stage"]
)
RETRIES = Counter(
    "tickpipe_checkpoint_retries_total", "Checkpoints retried after a retryable error", ["stage"]
)
STAGE_LATENCY = Histogram(
    "tickpipe_stage_latency_seconds",
    "Time to process one consumed batch, from poll to commit",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
FAILURE_RECORDS = Counter(
    "tickpipe_failure_records_total",
    "Records a stage gave up on and sent to the failures topic, by stage and error class",
    ["stage", "error"],
)
CONSUMER_LAG = Gauge(
    "tickpipe_consumer_lag",
    "Records of a partition not committed yet by its consumer group (high watermark minus "
    "committed offset), reported by the member the partition is assigned to",
    ["group", "topic", "partition"],
)
RECORDS_LOST_TO_RETENTION = Gauge(
    "tickpipe_consumer_records_lost_to_retention",
    "Records of a partition that retention deleted before the consumer group committed them "
    "(log start offset minus committed offset): they will never be processed; replay the "
    "stage upstream of the topic",
    ["group", "topic", "partition"],
)
LAST_CHECKPOINT = Gauge(
    "tickpipe_last_checkpoint_timestamp_seconds",
    "Unix time of the last committed checkpoint",
    ["stage"],
)


class Health:
    """Liveness of a service: healthy once started, while its loop keeps beating.

    ``max_silence_s`` bounds how long the main loop may go without :meth:`beat` (it beats on
    every poll, data or not) before ``/healthz`` answers 503.
    """

    def __init__(self, max_silence_s: float = 120.0) -> None:
        self.started = False
        self.reason = "starting"
        self._last_beat = time.monotonic()
        self._max_silence_s = max_silence_s

    def beat(self) -> None:
        """Mark the main loop as alive."""
        self.started = True
        self.reason = "ok"
        self._last_beat = time.monotonic()

    def fail(self, reason: str) -> None:
        """Report unhealthy with a reason until the next :meth:`beat`."""
        self.started = False
        self.reason = reason

    def healthy(self) -> bool:
        """True when started and the loop beat recently."""
        return self.started and time.monotonic() - self._last_beat < self._max_silence_s


async def start_http(
    host: str, port: int, health: Health, extra: Callable[[web.Application], None] | None = None
) -> web.AppRunner:
    """Serve ``/metrics`` (Prometheus text format) and ``/healthz`` on ``host:port``.

    Returns the runner; call ``await runner.cleanup()`` to stop. Raises :class:`OSError` when the
    port is taken.
    """

    async def metrics(_: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest())
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def healthz(_: web.Request) -> web.Response:
        ok = health.healthy()
        return web.json_response({"ok": ok, "reason": health.reason}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    if extra is not None:
        extra(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
