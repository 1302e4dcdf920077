"""Background processes of the local stack: pid files, log files, liveness and readiness waits."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tickpipe_dev.stack.paths import StackError, StackPaths

# --- pid files ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PidRecord:
    """Content of a pid file: the pid and, when known, the process start time.

    The start time (clock ticks since boot, ``/proc/<pid>/stat`` field 22) guards against pid
    reuse: after a reboot or a long time, a stale pid file may name an unrelated process.
    """

    pid: int
    start_ticks: int | None = None

    def render(self) -> str:
        """The pid file text: the pid on the first line, the start time on the second."""
        lines = [str(self.pid)]
        if self.start_ticks is not None:
            lines.append(str(self.start_ticks))
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> PidRecord | None:
        """Parse pid file text; ``None`` when it is empty or malformed."""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        try:
            pid = int(lines[0])
            start = int(lines[1]) if len(lines) > 1 else None
        except (IndexError, ValueError):
            return None
        return cls(pid, start) if pid > 0 else None


def process_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or ``None`` if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = stat[stat.rfind(")") + 2 :].split()
    return rest[0] if rest else None


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie.

    A zombie that is our own child (the API was used in-process, e.g. from pytest) is reaped.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if _state(pid) == "Z":
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def write_pid_file(path: Path, pid: int) -> PidRecord:
    """Record ``pid`` (with its start time) in ``path``, atomically. Returns what was written."""
    record = PidRecord(pid, process_start_ticks(pid))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(record.render())
    tmp.replace(path)
    return record


def read_pid_file(path: Path) -> PidRecord | None:
    """The record in ``path``, or ``None`` if the file is missing or malformed."""
    try:
        return PidRecord.parse(path.read_text())
    except OSError:
        return None


def live_pid(path: Path) -> int | None:
    """The pid recorded in ``path`` if that process still runs (and is the same process)."""
    record = read_pid_file(path)
    if record is None or not pid_alive(record.pid):
        return None
    if record.start_ticks is not None and process_start_ticks(record.pid) != record.start_ticks:
        return None
    return record.pid


def remove_pid_file(path: Path) -> None:
    """Delete ``path`` if it exists."""
    path.unlink(missing_ok=True)


# --- probes ---------------------------------------------------------------------------------


def port_open(port: int, host: str = "127.0.0.1", timeout_s: float = 0.5) -> bool:
    """True when a TCP connection to ``host:port`` succeeds within ``timeout_s`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    """True when GET ``url`` answers HTTP 200 within ``timeout_s`` seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of ``path`` ("" when it cannot be read)."""
    try:
        with path.open(errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines))
    except OSError:
        return ""


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    log: Path | None = None,
    pid: int | None = None,
    interval_s: float = 0.25,
) -> None:
    """Poll ``ready()`` until it returns True.

    Gives up early when ``pid`` is given and that process dies. Raises :class:`StackError` on
    timeout or death; the message names ``what`` and ends with the last 30 lines of ``log``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if ready():
            return
        if pid is not None and not pid_alive(pid):
            raise StackError(_failure(f"{what}: process {pid} exited", log))
        if time.monotonic() >= deadline:
            raise StackError(_failure(f"{what}: not ready after {timeout_s:.0f}s", log))
        time.sleep(interval_s)


def _failure(message: str, log: Path | None) -> str:
    if log is None:
        return message
    text = tail(log).rstrip()
    body = f"\n--- last lines of {log} ---\n{text}\n---" if text else f" (log {log} is empty)"
    return f"{message}; log: {log}{body}"


# --- start / stop ---------------------------------------------------------------------------


def spawn(
    name: str,
    argv: Sequence[str],
    paths: StackPaths,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log_path: Path | None = None,
) -> int:
    """Start ``argv`` in the background as component ``name``; returns its pid.

    stdout and stderr are appended to ``.local/log/<name>.log`` (or ``log_path``) and the pid is
    recorded in ``.local/run/<name>.pid``. The process gets its own session so that it outlives
    the CLI and does not receive the terminal's Ctrl-C. Raises :class:`StackError` if it cannot
    be executed.
    """
    paths.ensure_dirs()
    log_path = log_path or paths.log_file(name)
    with log_path.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start {name}\n".encode())
        log.flush()
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd or paths.root,
                start_new_session=True,
            )
        except OSError as exc:
            raise StackError(f"{name}: cannot run {argv[0]}: {exc}") from exc
    write_pid_file(paths.pid_file(name), process.pid)
    return process.pid


def terminate(pid: int, *, timeout_s: float = 20.0) -> bool:
    """SIGTERM ``pid``, wait up to ``timeout_s`` seconds, then SIGKILL it.

    Returns True when SIGKILL was needed. A process that is already gone is not an error.
    """
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return False
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


# --- mutual exclusion -----------------------------------------------------------------------

_lock_state = threading.local()


@contextlib.contextmanager
def stack_lock(paths: StackPaths) -> Iterator[None]:
    """Hold ``.local/run/stack.lock`` (flock) for the block; re-entrant within a thread.

    Two ``up`` at once (two pytest sessions, a shell and a test) would otherwise both see Kafka
    down and both start it. Children do not inherit the descriptor (Popen closes fds), so a
    long-running broker never holds the lock.
    """
    depth = getattr(_lock_state, "depth", 0)
    if depth:
        _lock_state.depth = depth + 1
        try:
            yield
        finally:
            _lock_state.depth -= 1
        return
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    with (paths.run_dir / "stack.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _lock_state.depth = 1
        try:
            yield
        finally:
            _lock_state.depth = 0
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- output ---------------------------------------------------------------------------------


class Reporter:
    """Prints one short line per step, with its duration, to stdout (or nowhere if quiet)."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet

    def line(self, text: str) -> None:
        """Print ``text`` unless quiet."""
        if not self.quiet:
            print(text, flush=True)

    def warn(self, text: str) -> None:
        """Print a warning to stderr (even when quiet: warnings must not vanish)."""
        print(f"warning: {text}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[StepNote]:
        """Time the block and print ``what ... <result> (1.2s)``; on error print ``FAILED``."""
        note = StepNote()
        started = time.monotonic()
        try:
            yield note
        except BaseException:
            self.line(f"{what:<38} FAILED ({time.monotonic() - started:.1f}s)")
            raise
        self.line(f"{what:<38} {note.result} ({time.monotonic() - started:.1f}s)")


class StepNote:
    """Outcome text of a :meth:`Reporter.step`, set by the block (default ``ok``)."""

    def __init__(self) -> None:
        self.result = "ok"
