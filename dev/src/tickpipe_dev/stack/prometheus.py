"""Prometheus for the local stack (``tickpipe-stack up --observability``): Debian's
``prometheus`` binary as a background process, data under ``.local/prometheus/``.

It loads the one configuration of the project, ``deploy/prometheus/prometheus.yml`` (the same as
docker compose), rendered into ``.local/prometheus/`` with two local differences: the rule file
by its absolute path, and the file_sd targets file listing the services' metrics ports on
127.0.0.1. The integration test uses :func:`start` with its own directory, port, targets and a
short scrape interval.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from tickpipe_shared.config import DEFAULT_METRICS_PORTS

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

NAME = "prometheus"
PORT = 9090
READY_TIMEOUT_S = 60.0
#: Path of the project's configuration, relative to the repository root.
CONFIG = Path("deploy/prometheus/prometheus.yml")


def binary() -> str:
    """Path of the ``prometheus`` executable; raises :class:`StackError` when missing."""
    found = shutil.which("prometheus")
    if found is None:
        raise StackError("prometheus: not installed (Debian package prometheus; run bin/bootstrap)")
    return found


def ready_url(port: int = PORT) -> str:
    """``/-/ready`` of a Prometheus on 127.0.0.1:``port``."""
    return f"http://127.0.0.1:{port}/-/ready"


def is_ready(port: int = PORT) -> bool:
    """True when a Prometheus on 127.0.0.1:``port`` answers ``/-/ready`` with 200."""
    return http_ok(ready_url(port))


def targets(ports: Mapping[str, int], host: str = "127.0.0.1") -> list[dict[str, Any]]:
    """file_sd target groups: one per service, ``host:port`` with a ``service`` label."""
    return [
        {"targets": [f"{host}:{port}"], "labels": {"service": name}} for name, port in ports.items()
    ]


def render(
    root: Path,
    directory: Path,
    ports: Mapping[str, int],
    *,
    scrape_interval: str | None = None,
) -> Path:
    """Write ``directory/prometheus.yml`` (the project's configuration with absolute rule file
    paths and, when given, ``scrape_interval`` and an equal ``evaluation_interval``, e.g.
    ``"1s"``) and its targets file from ``ports`` (service → metrics port). Returns the
    configuration's path. Raises :class:`StackError` when the project file is missing.
    """
    source = root / CONFIG
    try:
        config: dict[str, Any] = yaml.safe_load(source.read_text())
    except OSError as exc:
        raise StackError(f"prometheus: cannot read {source}: {exc}") from exc
    config["rule_files"] = [str((source.parent / f).resolve()) for f in config["rule_files"]]
    if scrape_interval is not None:
        config["global"]["scrape_interval"] = scrape_interval
        config["global"]["evaluation_interval"] = scrape_interval
    for job in config["scrape_configs"]:
        for sd in job.get("file_sd_configs", []):
            if scrape_interval is not None:
                sd["refresh_interval"] = scrape_interval
            for name in sd["files"]:
                target_file = directory / name
                target_file.parent.mkdir(parents=True, exist_ok=True)
                target_file.write_text(yaml.safe_dump(targets(ports), sort_keys=False))
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "prometheus.yml"
    out.write_text(
        f"# Rendered from {source} by tickpipe-stack; edit that file instead.\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    return out


def start(
    paths: StackPaths,
    reporter: Reporter,
    *,
    port: int = PORT,
    ports: Mapping[str, int] = DEFAULT_METRICS_PORTS,
    scrape_interval: str | None = None,
) -> int:
    """Start Prometheus on 127.0.0.1:``port`` scraping ``ports`` (service → metrics port) unless
    it already runs; wait until it is ready. Config and TSDB live in ``paths.local/prometheus``.

    Returns its pid. Raises :class:`StackError` when the binary is missing, the port is taken by
    a process we did not start, or it is not ready within ``READY_TIMEOUT_S`` seconds.
    """
    directory = paths.local / NAME
    pid = live_pid(paths.pid_file(NAME))
    with reporter.step(f"prometheus: 127.0.0.1:{port}") as note:
        if pid is not None:
            note.result = f"already running (pid {pid})"
        else:
            remove_pid_file(paths.pid_file(NAME))
            if port_open(port):
                raise StackError(f"prometheus: port {port} is in use by a process we did not start")
            exe = binary()
            config = render(paths.root, directory, ports, scrape_interval=scrape_interval)
            argv = [
                exe,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                "--storage.tsdb.retention.time=15d",
                f"--web.listen-address=127.0.0.1:{port}",
            ]
            pid = spawn(NAME, argv, paths)
            note.result = f"pid {pid}"
        wait_until(lambda: is_ready(port), timeout_s=READY_TIMEOUT_S, what=NAME,
                   log=paths.log_file(NAME), pid=pid)  # fmt: skip
    return pid
