"""The local stack's operations as functions, for the CLI and for pytest fixtures.

Every function raises :class:`~tickpipe_dev.stack.paths.StackError` with a message that says what
failed and where its log is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import time
from collections.abc import Coroutine
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from tickpipe_shared.config import Settings

from tickpipe_dev.stack import kafka, postgres, prometheus, services
from tickpipe_dev.stack.paths import StackError, StackPaths
from tickpipe_dev.stack.processes import (
    Reporter,
    http_ok,
    live_pid,
    port_open,
    remove_pid_file,
    stack_lock,
)

__all__ = [
    "ComponentStatus",
    "StackError",
    "StackPaths",
    "down",
    "ensure_topics",
    "load_settings",
    "reset_data",
    "restart",
    "status",
    "up",
]

T = TypeVar("T")
TOPICS_TIMEOUT_S = 30.0
#: Components ``restart`` accepts: the services, the stand-in, and the infrastructure.
COMPONENTS: tuple[str, ...] = (
    kafka.NAME, postgres.NAME, services.STANDIN, *services.SERVICES,
)  # fmt: skip


def _paths(paths: StackPaths | None) -> StackPaths:
    return paths or StackPaths.discover()


def _run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    # asyncio.run() refuses to nest: from inside a running loop (an async fixture), use a thread.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def load_settings() -> Settings:
    """Fresh :class:`Settings` from the current environment (not the cached ``get_settings``)."""
    # Without the pydantic mypy plugin, mypy sees every field as a required argument.
    overrides: dict[str, Any] = {}
    return Settings(**overrides)


def ensure_topics(settings: Settings, reporter: Reporter | None = None) -> list[str]:
    """Create the missing tickpipe topics (``tickpipe_shared.kafka.topics.ensure_topics``).

    Retries for up to ``TOPICS_TIMEOUT_S`` seconds because a freshly started KRaft node may
    briefly reject creations. Returns the names created. Raises :class:`StackError` on failure.
    """
    from tickpipe_shared.kafka.topics import ensure_topics as create

    reporter = reporter or Reporter()
    deadline = time.monotonic() + TOPICS_TIMEOUT_S
    with reporter.step("kafka: topics") as note:
        while True:
            try:
                created = _run_coroutine(create(settings))
                break
            except Exception as exc:  # aiokafka raises a zoo of types; all are retriable here.
                if time.monotonic() >= deadline:
                    raise StackError(f"kafka: creating topics failed: {exc!r}") from exc
                time.sleep(1.0)
        note.result = f"created {len(created)}" if created else "present"
    return created


def up(
    *,
    infra_only: bool = False,
    observability: bool = False,
    paths: StackPaths | None = None,
    reporter: Reporter | None = None,
) -> Settings:
    """Bring the stack up: Kafka, PostgreSQL, topics and, unless ``infra_only``, the stand-in
    Dukascopy server and the services; with ``observability``, Prometheus on :9090 scraping the
    services (:mod:`tickpipe_dev.stack.prometheus`). Components already running are left as
    they are.

    Returns the :class:`Settings` (from the environment) the stack serves. Raises
    :class:`StackError` when a component fails to start or become healthy.
    """
    paths = _paths(paths)
    reporter = reporter or Reporter()
    with stack_lock(paths):
        settings = _up(infra_only, paths, reporter)
        if observability:
            prometheus.start(paths, reporter)
        return settings


def _up(infra_only: bool, paths: StackPaths, reporter: Reporter) -> Settings:
    paths.ensure_dirs()
    started = time.monotonic()
    kafka.start(paths, reporter)
    postgres.start(paths, reporter)
    settings = load_settings()
    ensure_topics(settings, reporter)
    if not infra_only:
        standin_pid = services.start_standin(paths, reporter)
        services.start_services(
            paths, reporter, standin_port=services.STANDIN_PORT if standin_pid else None
        )
    reporter.line(f"{'stack up':<38} ({time.monotonic() - started:.1f}s); logs in {paths.log_dir}")
    return settings


def down(
    *,
    keep_infra: bool = False,
    paths: StackPaths | None = None,
    reporter: Reporter | None = None,
) -> None:
    """Stop what ``up`` started (by pid file): Prometheus, services in reverse pipeline order,
    the stand-in, then, unless ``keep_infra``, Kafka and PostgreSQL. Pid files are removed.
    """
    paths = _paths(paths)
    reporter = reporter or Reporter()
    with stack_lock(paths):
        services.stop_component(paths, prometheus.NAME, reporter)
        for name in reversed(services.SERVICES):
            services.stop_component(paths, name, reporter)
        services.stop_component(paths, services.STANDIN, reporter)
        if not keep_infra:
            kafka.stop(paths, reporter)
            postgres.stop(paths, reporter)
    reporter.line(f"{'stack down':<38} {'(infra kept)' if keep_infra else ''}".rstrip())


def restart(name: str, *, paths: StackPaths | None = None, reporter: Reporter | None = None) -> int:
    """Stop component ``name`` (one of :data:`COMPONENTS`) and start it again; returns its pid.

    A service gets the stand-in URLs when the stand-in is running. Raises :class:`StackError`
    for an unknown name or when the start fails.
    """
    paths = _paths(paths)
    reporter = reporter or Reporter()
    with stack_lock(paths):
        return _restart(name, paths, reporter)


def _restart(name: str, paths: StackPaths, reporter: Reporter) -> int:
    if name == kafka.NAME:
        kafka.stop(paths, reporter)
        return kafka.start(paths, reporter)
    if name == postgres.NAME:
        postgres.stop(paths, reporter)
        return postgres.start(paths, reporter)
    if name == services.STANDIN:
        services.stop_component(paths, name, reporter)
        pid = services.start_standin(paths, reporter)
        if pid is None:
            raise StackError("standin: not started (no data or not installed)")
        return pid
    if name not in services.SERVICES:
        raise StackError(f"unknown component {name!r}; one of {', '.join(COMPONENTS)}")
    services.stop_component(paths, name, reporter)
    standin_up = live_pid(paths.pid_file(services.STANDIN)) is not None
    pids = services.start_services(
        paths, reporter, names=(name,),
        standin_port=services.STANDIN_PORT if standin_up else None,
    )  # fmt: skip
    return pids[name]


def reset_data(*, paths: StackPaths | None = None, reporter: Reporter | None = None) -> None:
    """Stop everything, then delete ``.local/kafka/data`` and ``.local/pg`` (jars and logs stay)."""
    paths = _paths(paths)
    reporter = reporter or Reporter()
    with stack_lock(paths):
        down(paths=paths, reporter=reporter)
        with reporter.step("reset: delete kafka + postgres data"):
            for directory in data_dirs(paths):
                if directory.exists():
                    shutil.rmtree(directory)


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """One row of ``status``: pid from our pid file, port, process alive, endpoint healthy."""

    name: str
    pid: int | None
    port: int
    running: bool
    healthy: bool
    log: str
    #: What the component runs, where it says (PostgreSQL: TimescaleDB version or plain).
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


def _postgres_healthy() -> bool:
    try:
        return postgres.is_ready()
    except StackError:  # no binaries: cannot be running either
        return False


def status(*, paths: StackPaths | None = None) -> list[ComponentStatus]:
    """The state of every component (no side effects beyond clearing stale pid files)."""
    paths = _paths(paths)
    rows: list[tuple[str, int, bool]] = [
        (kafka.NAME, kafka.BROKER_PORT, kafka.is_ready()),
        (postgres.NAME, postgres.PORT, _postgres_healthy()),
        (services.STANDIN, services.STANDIN_PORT, port_open(services.STANDIN_PORT)),
    ]
    for name in services.SERVICES:
        rows.append((name, services.metrics_port(name), http_ok(services.health_url(name))))
    rows.append((prometheus.NAME, prometheus.PORT, prometheus.is_ready()))
    result = []
    for name, port, healthy in rows:
        pid_file = paths.pid_file(name)
        pid = live_pid(pid_file)
        if pid is None and pid_file.exists():
            remove_pid_file(pid_file)
        detail = _postgres_detail(paths) if name == postgres.NAME and healthy else ""
        result.append(
            ComponentStatus(
                name, pid, port, pid is not None, healthy, str(paths.log_file(name)), detail
            )
        )
    return result


def _postgres_detail(paths: StackPaths) -> str:
    try:
        return postgres.server_description(paths)
    except StackError:  # the tickpipe database is not there yet, or not ours
        return ""


def data_dirs(paths: StackPaths | None = None) -> list[Path]:
    """Directories ``reset_data`` deletes."""
    paths = _paths(paths)
    return [paths.kafka_data, paths.pg_dir]
