"""What the benches share: the recorded payloads (found and named through ``tests/support``, the
same helpers the tests use) and best-of-N timing. Importing it puts ``tests/`` on ``sys.path``."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

from support.shared_data import SHARED_MISSING, locate_shared_dir  # noqa: E402


def dukascopy_dir() -> Path:
    """``../shared/data/dukascopy`` (or under ``TICKPIPE_SHARED_DIR``); exits when missing."""
    shared = locate_shared_dir()
    if shared is None:
        sys.exit(SHARED_MISSING)
    return shared / "data" / "dukascopy"


def best(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    """The shortest of ``repeat`` runs of ``fn`` (seconds) and what its last run returned."""
    times, n = [], 0
    for _ in range(repeat):
        t = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - t)
    return min(times), n
