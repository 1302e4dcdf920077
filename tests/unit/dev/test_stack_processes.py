"""Pid files, liveness, background processes and readiness waits of the local stack."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tickpipe_dev.stack import processes
from tickpipe_dev.stack.paths import StackError, StackPaths
from tickpipe_dev.stack.processes import PidRecord


@pytest.fixture
def paths(tmp_path: Path) -> StackPaths:
    return StackPaths(root=tmp_path, local=tmp_path / ".local")


@pytest.mark.parametrize("record", [PidRecord(123, 456), PidRecord(7)])
def test_pid_record_round_trip(record: PidRecord) -> None:
    assert PidRecord.parse(record.render()) == record


@pytest.mark.parametrize("text", ["", "\n", "abc", "-5\n", "0", "12\nnot-ticks\n"])
def test_malformed_pid_files_are_ignored(text: str) -> None:
    assert PidRecord.parse(text) is None


def test_pid_file_of_this_process_is_live(tmp_path: Path) -> None:
    pid_file = tmp_path / "me.pid"
    record = processes.write_pid_file(pid_file, os.getpid())
    assert record.start_ticks == processes.process_start_ticks(os.getpid())
    assert processes.live_pid(pid_file) == os.getpid()


def test_reused_pid_is_not_ours(tmp_path: Path) -> None:
    # Same pid, different start time: the recorded process is gone and the pid was reused.
    pid_file = tmp_path / "reused.pid"
    ticks = processes.process_start_ticks(os.getpid())
    assert ticks is not None
    pid_file.write_text(PidRecord(os.getpid(), ticks + 1).render())
    assert processes.live_pid(pid_file) is None


def test_dead_process_and_missing_file_are_not_live(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    pid_file = tmp_path / "dead.pid"
    pid_file.write_text(PidRecord(proc.pid).render())
    assert processes.live_pid(pid_file) is None
    assert processes.live_pid(tmp_path / "missing.pid") is None


def test_spawn_logs_records_pid_and_terminate_stops(paths: StackPaths) -> None:
    code = "import time; print('hello', flush=True); time.sleep(60)"
    pid = processes.spawn("sleeper", [sys.executable, "-c", code], paths)
    try:
        assert processes.live_pid(paths.pid_file("sleeper")) == pid
        assert os.getsid(pid) == pid  # its own session: survives the CLI's terminal
        processes.wait_until(
            lambda: "hello" in paths.log_file("sleeper").read_text(), timeout_s=10, what="log"
        )
    finally:
        assert processes.terminate(pid, timeout_s=10) is False
    assert not processes.pid_alive(pid)


def test_terminate_kills_a_process_that_ignores_sigterm(paths: StackPaths) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    pid = processes.spawn("stubborn", [sys.executable, "-c", code], paths)
    processes.wait_until(
        lambda: "ready" in paths.log_file("stubborn").read_text(), timeout_s=10, what="ready"
    )
    started = time.monotonic()
    assert processes.terminate(pid, timeout_s=0.5) is True
    assert time.monotonic() - started < 5
    assert not processes.pid_alive(pid)


def test_spawn_of_a_missing_program_says_so(paths: StackPaths) -> None:
    with pytest.raises(StackError, match="cannot run"):
        processes.spawn("ghost", [str(paths.root / "no-such-program")], paths)


def test_wait_until_timeout_quotes_the_log(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    with pytest.raises(StackError) as excinfo:
        processes.wait_until(lambda: False, timeout_s=0.2, what="svc", log=log, interval_s=0.05)
    message = str(excinfo.value)
    assert "svc: not ready after" in message
    assert str(log) in message
    assert "line 99" in message and "line 70" in message and "line 69" not in message


def test_wait_until_stops_early_when_the_process_dies(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    started = time.monotonic()
    with pytest.raises(StackError, match="exited"):
        processes.wait_until(lambda: False, timeout_s=30, what="svc", pid=proc.pid)
    assert time.monotonic() - started < 5


def test_reporter_prints_one_line_per_step(capsys: pytest.CaptureFixture[str]) -> None:
    reporter = processes.Reporter()
    with reporter.step("thing: start") as note:
        note.result = "pid 42"
    with pytest.raises(ValueError), reporter.step("other: start"):
        raise ValueError("boom")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("thing: start") and "pid 42 (" in lines[0]
    assert lines[1].startswith("other: start") and "FAILED" in lines[1]


def test_stack_lock_excludes_other_processes_and_is_reentrant(paths: StackPaths) -> None:
    probe = (
        "import fcntl, sys\n"
        "with open(sys.argv[1], 'a') as f:\n"
        "    try:\n"
        "        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "    except BlockingIOError:\n"
        "        sys.exit(3)\n"
    )
    lock_file = str(paths.run_dir / "stack.lock")
    with processes.stack_lock(paths), processes.stack_lock(paths):
        held = subprocess.run([sys.executable, "-c", probe, lock_file], check=False)
        assert held.returncode == 3
    free = subprocess.run([sys.executable, "-c", probe, lock_file], check=False)
    assert free.returncode == 0
