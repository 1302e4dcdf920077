"""The tickpipe services and the stand-in Dukascopy server, run as background processes."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from functools import partial
from pathlib import Path

from tickpipe_shared.config import DEFAULT_METRICS_PORTS

from tickpipe_dev.stack.paths import StackError, StackPaths
from tickpipe_dev.stack.processes import (
    Reporter,
    http_ok,
    live_pid,
    port_open,
    remove_pid_file,
    spawn,
    terminate,
    wait_until,
)

#: Pipeline order, then the tracker (off the data path: request progress) and the Market Data
#: API (HTTP on API_PORT); they are stopped in reverse so that the writer drains last.
SERVICES: tuple[str, ...] = ("fetcher", "decoder", "validator", "writer", "tracker", "api")
#: HTTP port of the Market Data API on the local stack (TICKPIPE_API_PORT).
API_PORT = 8000
STANDIN = "standin"
STANDIN_PORT = 8765
HEALTH_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


def venv_bin() -> Path:
    """The directory of this interpreter's console scripts (the workspace venv's ``bin``)."""
    return Path(sys.executable).parent


def script(name: str) -> Path:
    """Path of the console script ``tickpipe-<name>`` in :func:`venv_bin`."""
    return venv_bin() / f"tickpipe-{name}"


def metrics_port(name: str) -> int:
    """The ``/metrics`` + ``/healthz`` port the stack gives service ``name``."""
    return DEFAULT_METRICS_PORTS[name]


def health_url(name: str) -> str:
    """``http://127.0.0.1:<port>/healthz`` of service ``name``."""
    return f"http://127.0.0.1:{metrics_port(name)}/healthz"


def service_env(
    name: str, base: Mapping[str, str], *, standin_port: int | None = None
) -> dict[str, str]:
    """Environment of service ``name``: ``base`` plus its metrics port and, when the stand-in
    runs on ``standin_port``, the source URLs (Dukascopy, Deriv, Polygon) pointing at it unless
    ``base`` already sets them.
    """
    env = dict(base)
    env["TICKPIPE_METRICS_PORT"] = str(metrics_port(name))
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("TICKPIPE_SYNTHETIC_SOURCE", "1")  # generated ticks for volume runs
    if name == "api":
        # The local stack is the one place auth may be off, and it says so explicitly.
        env.setdefault("TICKPIPE_API_AUTH", "off")
        env.setdefault("TICKPIPE_API_PORT", str(API_PORT))
        env.setdefault("TICKPIPE_API_HOST", "127.0.0.1")
    if standin_port is not None:
        env.setdefault("TICKPIPE_DUKASCOPY_JSON_URL", f"http://127.0.0.1:{standin_port}/v1")
        env.setdefault("TICKPIPE_DUKASCOPY_BI5_URL", f"http://127.0.0.1:{standin_port}/datafeed")
        env.setdefault("TICKPIPE_DERIV_URL", f"ws://127.0.0.1:{standin_port}/websockets/v3")
        env.setdefault("TICKPIPE_POLYGON_URL", f"http://127.0.0.1:{standin_port}")
    return env


def standin_available() -> bool:
    """True when the stand-in server is importable and its console script is installed."""
    try:
        found = importlib.util.find_spec("tickpipe_dev.standin.main") is not None
    except ImportError:
        found = False
    return found and script(STANDIN).exists()


def start_standin(paths: StackPaths, reporter: Reporter) -> int | None:
    """Start the stand-in Dukascopy server on port 8765 if its data directory exists.

    Returns its pid, or ``None`` when skipped (no data beside the repository, or the stand-in is
    not installed yet: a warning is printed). Raises :class:`StackError` when it does not listen
    within ``HEALTH_TIMEOUT_S`` seconds.
    """
    data = paths.dukascopy_data
    if not data.is_dir():
        reporter.line(f"{'standin: skipped':<38} no {data}")
        return None
    if not standin_available():
        reporter.warn(f"stand-in server not installed ({script(STANDIN)}); skipping it")
        return None
    pid = live_pid(paths.pid_file(STANDIN))
    with reporter.step(f"standin: 127.0.0.1:{STANDIN_PORT}") as note:
        if pid is not None:
            note.result = f"already running (pid {pid})"
        else:
            remove_pid_file(paths.pid_file(STANDIN))
            if port_open(STANDIN_PORT):
                raise StackError(f"standin: port {STANDIN_PORT} is in use by another process")
            argv = [str(script(STANDIN)), "--root", str(data), "--port", str(STANDIN_PORT)]
            pid = spawn(STANDIN, argv, paths, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            note.result = f"pid {pid}"
        wait_until(lambda: port_open(STANDIN_PORT), timeout_s=HEALTH_TIMEOUT_S, what=STANDIN,
                   log=paths.log_file(STANDIN), pid=pid)  # fmt: skip
    return pid


def start_services(
    paths: StackPaths,
    reporter: Reporter,
    *,
    names: tuple[str, ...] = SERVICES,
    standin_port: int | None = None,
    env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, int]:
    """Start each service in ``names`` that is not already running, then wait for its /healthz.
    ``extra_env``: service → variables added to its environment (replica counts).

    ``env`` entries are added to every service's environment (``--secure``: TLS and SASL).

    All are launched first and then awaited, so their start-up overlaps. Returns name → pid.
    Raises :class:`StackError` when a script is missing, a process dies, or /healthz does not
    answer 200 within ``HEALTH_TIMEOUT_S`` seconds (with the last 30 lines of its log).
    """
    pids: dict[str, int] = {}
    launched: set[str] = set()
    for name in names:
        pid = live_pid(paths.pid_file(name))
        if pid is None:
            remove_pid_file(paths.pid_file(name))
            exe = script(name)
            if not exe.exists():
                raise StackError(
                    f"{name}: {exe} not found (service not written yet, or run uv sync)"
                )
            port = metrics_port(name)
            if port_open(port):
                raise StackError(f"{name}: port {port} is in use by a process we did not start")
            base = {**os.environ, **(env or {})}
            proc_env = service_env(name, base, standin_port=standin_port)
            proc_env.update((extra_env or {}).get(name, {}))
            pid = spawn(name, [str(exe)], paths, env=proc_env)
            launched.add(name)
        pids[name] = pid
    for name, pid in pids.items():
        with reporter.step(f"{name}: :{metrics_port(name)}/healthz") as note:
            wait_until(partial(http_ok, health_url(name)), timeout_s=HEALTH_TIMEOUT_S,
                       what=name, log=paths.log_file(name), pid=pid)  # fmt: skip
            note.result = f"pid {pid}" if name in launched else f"already running (pid {pid})"
    return pids


def stop_component(paths: StackPaths, name: str, reporter: Reporter, *,
                   timeout_s: float = STOP_TIMEOUT_S) -> bool:  # fmt: skip
    """Stop background component ``name`` by its pid file (SIGTERM, then SIGKILL after
    ``timeout_s`` seconds) and remove the pid file. Returns False when it was not running.
    """
    pid_file = paths.pid_file(name)
    pid = live_pid(pid_file)
    if pid is None:
        remove_pid_file(pid_file)
        return False
    with reporter.step(f"{name}: stop") as note:
        killed = terminate(pid, timeout_s=timeout_s)
        note.result = f"pid {pid} killed after {timeout_s:.0f}s" if killed else f"pid {pid} stopped"
    remove_pid_file(pid_file)
    return True
