"""How ``tickpipe request --wait`` shows a request's progress: a rich progress bar with units/s,
ticks/s and ETA on a terminal, plain lines (with the same rates) otherwise, only the final line
with ``--quiet``, only the completion event with ``--json``."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tickpipe_cli.output import console as stdout_console


class Snapshot(Protocol):
    """What a display reads of a request (:class:`~tickpipe_cli.requests.WaitResult`)."""

    expected: int | None
    ticks: int
    rows_name: str

    @property
    def done(self) -> int: ...

    def line(self) -> str: ...


class Rates:
    """Units/s, rows/s and the ETA since the first progress seen (monotonic ``clock``)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.start: float | None = None
        self.base_done = 0
        self.base_rows = 0

    def observe(self, snap: Snapshot) -> tuple[float, float, float | None]:
        """``(units/s, rows/s, eta_s)``; ETA ``None`` while unknown."""
        now = self.clock()
        if self.start is None:
            self.start, self.base_done, self.base_rows = now, snap.done, snap.ticks
            return 0.0, 0.0, None
        elapsed = max(now - self.start, 1e-9)
        ups = (snap.done - self.base_done) / elapsed
        rps = (snap.ticks - self.base_rows) / elapsed
        left = (snap.expected - snap.done) if snap.expected is not None else None
        eta = left / ups if left is not None and ups > 0 else None
        return ups, rps, eta


def _eta(eta: float | None) -> str:
    if eta is None:
        return "ETA ?"
    return f"ETA {int(eta // 60)}:{int(eta % 60):02d}"


class PlainDisplay:
    """A line per change: ``12:00:01 3 stored, … of 48 units, 6000 ticks — 1.5 units/s,
    3000 ticks/s, ETA 0:30``."""

    def __init__(self, out: Console | None = None, clock: Any = time.monotonic) -> None:
        self.out = out or stdout_console
        self.rates = Rates(clock)

    def update(self, snap: Snapshot) -> None:
        """Print the new state."""
        ups, rps, eta = self.rates.observe(snap)
        self.out.print(
            f"  {datetime.now():%H:%M:%S} {snap.line()} — {ups:.1f} units/s, "
            f"{rps:.0f} {snap.rows_name}/s, {_eta(eta)}",
            markup=False, highlight=False,
        )  # fmt: skip

    def finish(self) -> None:
        """Nothing to tear down."""

    def final(self, text: str) -> None:
        """Print the final line (and failure lines)."""
        self.out.print(text)


class RichDisplay(PlainDisplay):
    """A live progress bar on a terminal."""

    def __init__(self, out: Console | None = None, clock: Any = time.monotonic) -> None:
        super().__init__(out, clock)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rates]}"),
            TimeRemainingColumn(),
            console=self.out,
            transient=True,
        )
        self.task = self.progress.add_task("units", total=None, rates="")
        self.progress.start()

    def update(self, snap: Snapshot) -> None:
        """Move the bar."""
        ups, rps, _ = self.rates.observe(snap)
        self.progress.update(
            self.task, total=snap.expected, completed=snap.done,
            rates=f"{ups:.1f} units/s {rps:,.0f} {snap.rows_name}/s",
        )  # fmt: skip

    def finish(self) -> None:
        """Remove the bar (the final line replaces it)."""
        self.progress.stop()


class QuietDisplay(PlainDisplay):
    """Nothing but the final line."""

    def update(self, snap: Snapshot) -> None:
        """Print nothing."""

    def final(self, text: str) -> None:
        """Only the ``done``/``rejected``/``timed out`` line itself, not the failure list."""
        if not text.startswith("  [red]failed[/red]") and not text.startswith("  … and"):
            self.out.print(text)


class JsonDisplay(QuietDisplay):
    """The completion (or rejection) event as JSON on stdout, nothing else."""

    def final(self, text: str) -> None:
        """Print nothing: :meth:`event` prints."""

    def event(self, event: dict[str, Any] | None) -> None:
        """Print the final event (``{"event": "timeout"}`` when none came)."""
        sys.stdout.write(json.dumps(event or {"event": "timeout"}) + "\n")


def display_for(quiet: bool, as_json: bool) -> PlainDisplay:
    """The display for the options and stdout (a TTY gets the bar)."""
    if as_json:
        return JsonDisplay()
    if quiet:
        return QuietDisplay()
    if sys.stdout.isatty():
        return RichDisplay()
    return PlainDisplay()
