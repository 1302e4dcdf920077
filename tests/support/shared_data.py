"""Where the recorded payloads of ``../shared`` are (never copied into the repository)."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tickpipe_shared.units import plan_units

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


def bi5_hour_start(rel: Path) -> int:
    """Start (ms) of the hour of a ``.bi5`` tick file ``…/<YYYY>/<MM0>/<DD>/<HH>h_ticks.bi5``
    (months zero-based, as the datafeed spells them)."""
    y, m0, d = (int(x) for x in rel.parts[-4:-1])
    return int(datetime(y, m0 + 1, d, int(rel.name[:2]), tzinfo=UTC).timestamp() * 1000)


def bi5_candle_unit(rel: Path) -> tuple[str, int, int]:
    """(timeframe, unit start ms, unit end ms) of ``bi5/<SYMBOL>/<YYYY>[/<MM0>[/<DD>]]/
    <SIDE>_candles_<min|hour|day>_1.bi5``: a day of minute candles, a month of hour candles or a
    year of day candles."""
    tf = {"min": "1m", "hour": "1h", "day": "1d"}[rel.name.split("_")[2]]
    nums = [int(x) for x in rel.parts[2:-1]]
    y, m0, d = nums[0], nums[1] if len(nums) > 1 else 0, nums[2] if len(nums) > 2 else 1
    start = int(datetime(y, m0 + 1, d, tzinfo=UTC).timestamp() * 1000)
    [unit] = plan_units("", "-", f"candles:{tf}:bid", start, start + 1)
    return tf, unit.start_ms, unit.end_ms
