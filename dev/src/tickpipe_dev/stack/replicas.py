"""Replicas of the data-path services in the local stack (``tickpipe-stack up --replicas``).

Replica 1 of a service is the service itself (component ``writer``, metrics port 9104, log
``writer.log``); replica *k* > 1 is component ``<service>-<k>`` (``writer-2``) with its own pid
file, log (``.local/log/writer-2.log``) and metrics port :func:`replica_port` (the service's port
plus 10 per replica: ``writer-2`` on 9114, ``writer-3`` on 9124), so ports never collide for up
to :data:`MAX_REPLICAS` replicas. Every replica joins its stage's consumer group; Kafka gives
each partition to one member, so the topic's partition count (``TICKPIPE_TOPIC_PARTITIONS``,
default 6) is the ceiling: :func:`parse_replicas` refuses more. Fetcher replicas also get
``TICKPIPE_FETCH_REPLICAS`` so that together they keep each host's rate budget.

The counts asked for are remembered in ``.local/run/replicas.json`` until ``down`` (a later
``up`` or ``restart-service`` keeps them); ``down`` and ``status`` find the replicas by their
pid files.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from functools import partial

from tickpipe_dev.stack import services
from tickpipe_dev.stack.paths import StackError, StackPaths
from tickpipe_dev.stack.processes import (
    Reporter,
    http_ok,
    live_pid,
    port_open,
    remove_pid_file,
    spawn,
    wait_until,
)

#: Services that may run as several replicas: the data-path stages (consumer groups).
SCALABLE: tuple[str, ...] = ("fetcher", "decoder", "validator", "writer")
#: Metrics-port distance between replicas of one service.
PORT_STRIDE = 10
#: Most replicas of a service the local stack starts (the ports 91x1..91x4 stay distinct).
MAX_REPLICAS = 9
_NAME = re.compile(r"^(?P<service>[a-z]+)-(?P<index>[0-9]+)$")


def parse_replicas(text: str, partitions: int) -> dict[str, int]:
    """``"fetcher=2,writer=3"`` → ``{"fetcher": 2, "writer": 3}``.

    Raises :class:`StackError` naming the bad entry: a service that does not scale
    (:data:`SCALABLE`), a count that is not a whole number in 1..min(``partitions``,
    :data:`MAX_REPLICAS`) — more replicas than partitions would sit idle — or a repeat.
    """
    counts: dict[str, int] = {}
    ceiling = min(partitions, MAX_REPLICAS)
    for entry in filter(None, (e.strip() for e in text.split(","))):
        name, sep, value = entry.partition("=")
        name = name.strip()
        if not sep or name not in SCALABLE:
            raise StackError(
                f"--replicas {entry!r}: expected SERVICE=N, SERVICE one of {', '.join(SCALABLE)}"
            )
        if name in counts:
            raise StackError(f"--replicas: {name} given twice")
        if not value.strip().isdigit() or not 1 <= int(value) <= ceiling:
            raise StackError(
                f"--replicas {entry!r}: N must be a whole number from 1 to {ceiling} "
                f"(topics have {partitions} partitions: more replicas would sit idle)"
            )
        counts[name] = int(value)
    return counts


def replica_name(service: str, index: int) -> str:
    """Component name of replica ``index`` (1-based) of ``service``: ``writer``, ``writer-2``."""
    return service if index == 1 else f"{service}-{index}"


def split_name(name: str) -> tuple[str, int] | None:
    """``writer-2`` → ``("writer", 2)``; ``None`` for anything that is not a replica > 1 of a
    scalable service."""
    m = _NAME.match(name)
    if m is None or m["service"] not in SCALABLE:
        return None
    index = int(m["index"])
    return (m["service"], index) if 2 <= index <= MAX_REPLICAS else None


def replica_port(service: str, index: int) -> int:
    """Metrics port of replica ``index`` of ``service`` (replica 1: the service's own port)."""
    return services.metrics_port(service) + PORT_STRIDE * (index - 1)


def replica_env(
    service: str, index: int, count: int, base: Mapping[str, str], standin_port: int | None
) -> dict[str, str]:
    """Environment of replica ``index`` of ``count`` of ``service``: the service's own
    (:func:`~tickpipe_dev.stack.services.service_env`) with the replica's metrics port, and for
    the fetcher the replica count sharing the per-host rate."""
    env = services.service_env(service, base, standin_port=standin_port)
    env["TICKPIPE_METRICS_PORT"] = str(replica_port(service, index))
    if service == "fetcher":
        env["TICKPIPE_FETCH_REPLICAS"] = str(count)
    return env


def remembered(paths: StackPaths) -> dict[str, int]:
    """The replica counts the last ``up --replicas`` asked for (1 for services not named)."""
    try:
        data = json.loads(paths.run_dir.joinpath("replicas.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: int(v) for k, v in data.items() if k in SCALABLE}


def remember(paths: StackPaths, counts: Mapping[str, int]) -> None:
    """Record ``counts`` for ``status``, ``down`` and ``restart-service``."""
    paths.ensure_dirs()
    paths.run_dir.joinpath("replicas.json").write_text(json.dumps(dict(counts)), encoding="utf-8")


def forget(paths: StackPaths) -> None:
    """Drop the remembered counts (``down``): the next ``up`` runs one replica of each."""
    paths.run_dir.joinpath("replicas.json").unlink(missing_ok=True)


def running(paths: StackPaths) -> list[str]:
    """Component names of the extra replicas (index > 1) that have a pid file, in order."""
    found = []
    for pid_file in sorted(paths.run_dir.glob("*-*.pid")):
        parts = split_name(pid_file.stem)
        if parts is not None:
            found.append(parts)
    found.sort(key=lambda p: (SCALABLE.index(p[0]), p[1]))
    return [replica_name(s, i) for s, i in found]


def start(
    paths: StackPaths,
    reporter: Reporter,
    counts: Mapping[str, int],
    *,
    standin_port: int | None,
    only: str | None = None,
) -> dict[str, int]:
    """Start replicas 2..N of each service in ``counts`` that are not running (``only``: just
    that component), then wait for each one's /healthz. Returns component name → pid. Raises
    :class:`StackError` when a port is taken by a process we did not start, a replica dies, or
    its /healthz does not answer 200 within ``HEALTH_TIMEOUT_S``."""
    pids: dict[str, int] = {}
    for service, count in counts.items():
        for index in range(2, count + 1):
            name = replica_name(service, index)
            if only is not None and name != only:
                continue
            pid = live_pid(paths.pid_file(name))
            if pid is None:
                remove_pid_file(paths.pid_file(name))
                port = replica_port(service, index)
                if port_open(port):
                    raise StackError(f"{name}: port {port} is in use by a process we did not start")
                env = replica_env(service, index, count, os.environ, standin_port)
                pid = spawn(name, [str(services.script(service))], paths, env=env)
            pids[name] = pid
    for name, pid in pids.items():
        service, index = split_name(name) or (name, 1)
        port = replica_port(service, index)
        with reporter.step(f"{name}: :{port}/healthz") as note:
            url = f"http://127.0.0.1:{port}/healthz"
            wait_until(partial(http_ok, url), timeout_s=services.HEALTH_TIMEOUT_S, what=name,
                       log=paths.log_file(name), pid=pid)  # fmt: skip
            note.result = f"pid {pid}"
    return pids


def stop(paths: StackPaths, reporter: Reporter, service: str | None = None) -> None:
    """Stop every extra replica (of ``service`` only, when given), last stage first."""
    for name in reversed(running(paths)):
        parts = split_name(name)
        if parts is not None and (service is None or parts[0] == service):
            services.stop_component(paths, name, reporter)


def first_replica_env(counts: Mapping[str, int]) -> dict[str, dict[str, str]]:
    """Extra environment of replica 1 of each service in ``counts`` (the fetcher's replica
    count, so replica 1 also takes only its share of each host's rate)."""
    fetchers = counts.get("fetcher", 1)
    return {"fetcher": {"TICKPIPE_FETCH_REPLICAS": str(fetchers)}} if fetchers > 1 else {}
