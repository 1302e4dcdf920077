"""Where the recorded payloads of ``../shared`` are (never copied into the repository)."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_MISSING = (
    "../shared/data not found beside the repo: real-payload tests need it (set TICKPIPE_SHARED_DIR)"
)


def locate_shared_dir() -> Path | None:
    """``$TICKPIPE_SHARED_DIR`` or ``<repo root>/../shared`` if it holds ``data/dukascopy``."""
    env = os.environ.get("TICKPIPE_SHARED_DIR")
    candidate = Path(env) if env else REPO_ROOT.parent / "shared"
    return candidate if (candidate / "data" / "dukascopy").is_dir() else None


@dataclass(frozen=True)
class GoldenCsv:
    """A golden CSV: its header and its rows as text, exactly as written."""

    header: list[str]
    rows: list[list[str]]

    def column(self, name: str) -> list[str]:
        i = self.header.index(name)
        return [row[i] for row in self.rows]


def read_golden_csv(path: Path) -> GoldenCsv:
    """Read a golden CSV (``golden/<bi5|json>/<relative payload path>.csv``)."""
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return GoldenCsv(header, [row for row in reader if row])


def format_points(points: int, scale: int) -> str:
    """Integer points as an exact decimal with ``scale`` decimals (``114545, 5 → "1.14545"``)."""
    if scale <= 0:
        return str(points * 10**-scale)
    sign = "-" if points < 0 else ""
    whole, frac = divmod(abs(points), 10**scale)
    return f"{sign}{whole}.{frac:0{scale}d}"
