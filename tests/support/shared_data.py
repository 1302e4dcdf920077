"""Where the recorded payloads of ``../shared`` are (never copied into the repository)."""

from __future__ import annotations

import os
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
