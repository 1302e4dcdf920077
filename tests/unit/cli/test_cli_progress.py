"""``tickpipe request``: exit codes, the --wait displays (plain lines with rates and ETA,
--quiet, --json) and the --dry-run estimate, without Kafka."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from rich.console import Console
from tickpipe_cli import plan as plan_ops
from tickpipe_cli import progress
from tickpipe_cli import requests as request_ops
from tickpipe_cli.requests import WaitResult, exit_code
from tickpipe_fetcher.planner import Plan, Target
from tickpipe_shared.config import Settings
from tickpipe_shared.instruments.schedule import default_schedule_for
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.requests import parse_request

HOUR = 3_600_000


def result(**kw: Any) -> WaitResult:
    r = WaitResult(expected=4, finished=True, events=2)
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_exit_codes() -> None:
    assert exit_code(result(stored=3, empty=1)) == request_ops.EXIT_OK == 0
    assert exit_code(result(stored=3, failed=1)) == request_ops.EXIT_FAILED == 1
    assert exit_code(result(rejected="unknown instrument")) == request_ops.EXIT_INVALID == 2
    assert exit_code(result(finished=False, stored=1)) == request_ops.EXIT_TIMEOUT == 3
    assert exit_code(result(stored=2, cancelled=2)) == request_ops.EXIT_CANCELLED == 5
    assert len({0, 1, 2, 3, request_ops.EXIT_UNREACHABLE, 5}) == 6


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_plain_lines_carry_rates_and_eta() -> None:
    out = io.StringIO()
    clock = Clock()
    shown = progress.PlainDisplay(Console(file=out, width=200), clock)
    snap = WaitResult(expected=10)
    shown.update(snap)
    snap.stored, snap.ticks, clock.t = 4, 8000, 102.0
    shown.update(snap)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("0.0 units/s, 0 ticks/s, ETA ?")
    assert "4 stored, 0 empty, 0 failed of 10 units, 8000 ticks" in lines[1]
    assert lines[1].endswith("2.0 units/s, 4000 ticks/s, ETA 0:03")


def test_quiet_prints_only_the_final_line(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    quiet = progress.QuietDisplay(Console(file=out, width=200))
    quiet.update(WaitResult(expected=3, stored=1))
    r = result(stored=3, failed=1, failures=[{"unit_key": "u", "stage": "decoder", "reason": "x"}])
    request_ops._report(r, parse_request(REQ), 10, quiet.final)
    assert len(out.getvalue().splitlines()) == 1 and "done" in out.getvalue()


def test_json_prints_only_the_completion_event(capsys: pytest.CaptureFixture[str]) -> None:
    shown = progress.JsonDisplay()
    event = {"event": "completed", "request_id": "r", "stored": 2, "cancelled": 0}
    r = WaitResult()
    r.apply(event)
    shown.update(r)
    request_ops._report(r, parse_request(REQ), 10, shown.final)
    shown.event(r.final_event)
    assert json.loads(capsys.readouterr().out) == event


REQ = json.dumps(
    {
        "instrument": "EURUSD",
        "source": "dukascopy-bi5",
        "from": "2019-02-01T20:00:00Z",
        "to": "2019-02-03T00:00:00Z",
    }
).encode()


def test_dry_run_estimates_from_what_is_stored() -> None:
    start = 1_549_051_200_000  # 2019-02-01T20:00Z, a Friday: 21:00 onwards the market is closed
    units = [Unit("dukascopy-bi5", "EURUSD", "ticks", start + i * HOUR, start + (i + 1) * HOUR)
             for i in range(28)]  # fmt: skip
    schedule = default_schedule_for("EURUSD")
    assert schedule is not None
    target = Target("EURUSD", "EURUSD", 5, "fx", schedule)
    opened = [i < 1 for i in range(28)]
    plan = Plan("ticks", target, units, 20, list(opened))
    settings = Settings(fetch_rate_per_host=2, fetch_rate_burst=4)
    stored = plan_ops.Estimate(units=10, rows=50_000, bytes_per_row=20.0)
    dry = plan_ops.dry_run(settings, parse_request(REQ), plan, stored)
    assert (dry.units, dry.already_stored, dry.closed_market) == (28, 20, 27)
    assert (dry.est_rows, dry.est_bytes) == (5000, 100_000)  # 1 open unit × 5000 rows × 20 B
    assert (dry.requests, dry.min_seconds) == (28, 12.0)  # (28 - burst 4) / 2 per s
    text = "\n".join(dry.lines())
    assert "nothing published" in text and "~5,000 rows, ~97.7 KiB stored" in text
    assert "at least 12 s" in text
    none = plan_ops.dry_run(Settings(fetch_rate_per_host=0), parse_request(REQ), plan,
                            plan_ops.Estimate(0, 0, None))  # fmt: skip
    assert (none.est_rows, none.est_bytes, none.min_seconds) == (None, None, None)
    assert "nothing stored yet" in "\n".join(none.lines())


def test_shell_completion_through_typer() -> None:
    from tickpipe_cli import main as cli_main
    from typer.testing import CliRunner

    help_text = CliRunner().invoke(cli_main.app, ["--help"]).output
    assert "--install-completion" in help_text and "--show-completion" in help_text
