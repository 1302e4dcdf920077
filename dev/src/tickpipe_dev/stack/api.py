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

from tickpipe_dev.stack import kafka, postgres, prometheus, replicas, secure, services
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
    secure_mode: bool = False,
    observability: bool = False,
    paths: StackPaths | None = None,
    reporter: Reporter | None = None,
    replica_counts: str | None = None,
) -> Settings:
    """Bring the stack up: Kafka, PostgreSQL, topics and, unless ``infra_only``, the stand-in
    Dukascopy server and the services. Components already running are left as they are.
    ``secure_mode`` (``--secure``) adds Kafka's SASL_SSL listener and PostgreSQL's TLS-only
    access (:mod:`tickpipe_dev.stack.secure`) and the services use them; the mode lasts until
    a full :func:`down`.
    ``replica_counts`` (``"fetcher=2,writer=2"``): run that many replicas of those data-path
    services (:mod:`tickpipe_dev.stack.replicas`); replicas beyond a new count are stopped.
    With ``observability``, Prometheus on :9090 scraping the services
    (:mod:`tickpipe_dev.stack.prometheus`).

    Returns the :class:`Settings` (from the environment) the stack serves. Raises
    :class:`StackError` when a component fails to start or become healthy.
    """
    paths = _paths(paths)
    reporter = reporter or Reporter()
    with stack_lock(paths):
        settings = _up(infra_only, secure_mode, paths, reporter, replica_counts)
        if observability:
            prometheus.start(paths, reporter)
        return settings


def _up(
    infra_only: bool,
    secure_mode: bool,
    paths: StackPaths,
    reporter: Reporter,
    replica_counts: str | None = None,
) -> Settings:
    paths.ensure_dirs()
    started = time.monotonic()
    secure_mode = secure_mode or secure.active(paths) is not None
    files = secure.ensure_files(paths, reporter) if secure_mode else None
    if files:
        secure.start_kafka(paths, reporter, files)
        with reporter.step(f"kafka: SCRAM user {secure.KAFKA_USER}"):
            _run_coroutine(secure.add_scram_user(files))
    else:
        kafka.start(paths, reporter)
    postgres.start(paths, reporter)
    if files:
        secure.configure_postgres(paths, reporter, files)
        secure.set_active(paths, True)
    else:
        secure.relax_postgres(paths, reporter)
    settings = secure.client_settings(files) if files else load_settings()
    counts = (
        replicas.parse_replicas(replica_counts, settings.topic_partitions)
        if replica_counts is not None
        else replicas.remembered(paths)
    )
    ensure_topics(settings, reporter)
    if not infra_only:
        standin_pid = services.start_standin(paths, reporter)
        standin_port = services.STANDIN_PORT if standin_pid else None
        if replica_counts is not None:
            _stop_surplus(paths, reporter, counts)
        services.start_services(
            paths, reporter, standin_port=standin_port,
            env=secure.client_env(files) if files else None,
            extra_env=replicas.first_replica_env(counts),
        )  # fmt: skip
        replicas.start(paths, reporter, counts, standin_port=standin_port)
        replicas.remember(paths, counts)
    reporter.line(f"{'stack up':<38} ({time.monotonic() - started:.1f}s); logs in {paths.log_dir}")
    return settings


def _stop_surplus(paths: StackPaths, reporter: Reporter, counts: dict[str, int]) -> None:
    """Stop replicas beyond the new ``counts`` (and, when the fetcher count changed, the running
    fetchers: their share of each host's rate is fixed at start)."""
    old = replicas.remembered(paths)
    for name in replicas.running(paths):
        parts = replicas.split_name(name)
        if parts is not None and parts[1] > counts.get(parts[0], 1):
            services.stop_component(paths, name, reporter)
    if old.get("fetcher", 1) != counts.get("fetcher", 1):
        replicas.stop(paths, reporter, "fetcher")
        services.stop_component(paths, "fetcher", reporter)


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
        replicas.stop(paths, reporter)
        replicas.forget(paths)
        services.stop_component(paths, prometheus.NAME, reporter)
        for name in reversed(services.SERVICES):
            services.stop_component(paths, name, reporter)
        services.stop_component(paths, services.STANDIN, reporter)
        if not keep_infra:
            kafka.stop(paths, reporter)
            postgres.stop(paths, reporter)
            secure.set_active(paths, False)
    reporter.line(f"{'stack down':<38} {'(infra kept)' if keep_infra else ''}".rstrip())


def restart(name: str, *, paths: StackPaths | None = None, reporter: Reporter | None = None) -> int:
    """Stop component ``name`` (one of :data:`COMPONENTS`, or a replica such as ``writer-2``)
    and start it again; returns its pid.

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
        files = secure.active(paths)
        return kafka.start(paths, reporter, secure.kafka_properties(files) if files else None)
    if name == postgres.NAME:
        postgres.stop(paths, reporter)
        return postgres.start(paths, reporter)
    if name == services.STANDIN:
        services.stop_component(paths, name, reporter)
        pid = services.start_standin(paths, reporter)
        if pid is None:
            raise StackError("standin: not started (no data or not installed)")
        return pid
    replica = replicas.split_name(name)
    if name not in services.SERVICES and replica is None:
        raise StackError(
            f"unknown component {name!r}; one of {', '.join(COMPONENTS)} or a replica "
            "(e.g. writer-2)"
        )
    standin_up = live_pid(paths.pid_file(services.STANDIN)) is not None
    files = secure.active(paths)
    standin_port = services.STANDIN_PORT if standin_up else None
    counts = replicas.remembered(paths)
    if replica is not None and replica[1] > counts.get(replica[0], 1):
        raise StackError(f"{name}: the stack runs {counts.get(replica[0], 1)} {replica[0]}s")
    services.stop_component(paths, name, reporter)
    if replica is not None:
        return replicas.start(paths, reporter, counts, standin_port=standin_port, only=name)[name]
    pids = services.start_services(
        paths, reporter, names=(name,), standin_port=standin_port,
        env=secure.client_env(files) if files else None,
        extra_env=replicas.first_replica_env(counts),
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
    for name in replicas.running(paths):
        service, index = replicas.split_name(name) or (name, 1)
        port = replicas.replica_port(service, index)
        rows.append((name, port, http_ok(f"http://127.0.0.1:{port}/healthz")))
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
