"""Shared pytest fixtures: where the recorded Dukascopy payloads live and how to read goldens.

The real payloads are never copied into the repository: they are read from ``../shared`` beside
the repo root (override with ``TICKPIPE_SHARED_DIR``). Tests that need them take the
``shared_dir`` / ``dukascopy_dir`` fixtures and are skipped with a clear message when absent.

Test functions may also take one of the parameters ``bi5_tick_file``, ``bi5_candle_file``,
``json_tick_file``, ``json_candle_file``: they are parametrized with every such payload's path
relative to ``data/dukascopy/`` (one ``None`` case, which skips, when the data are absent).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
from support.shared_data import (
    SHARED_MISSING,
    GoldenCsv,
    locate_shared_dir,
    read_golden_csv,
)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """Path of ``../shared``; skips the test when it (or its ``data/dukascopy``) is absent."""
    found = locate_shared_dir()
    if found is None:
        pytest.skip(SHARED_MISSING)
    return found


@pytest.fixture(scope="session")
def dukascopy_dir(shared_dir: Path) -> Path:
    """``../shared/data/dukascopy``: the recorded payloads and their goldens."""
    return shared_dir / "data" / "dukascopy"


@pytest.fixture(scope="session")
def golden(dukascopy_dir: Path) -> Callable[[str], GoldenCsv]:
    """``golden(rel)`` reads the golden CSV of the payload at ``data/dukascopy/<rel>``."""

    def read(rel: str) -> GoldenCsv:
        return read_golden_csv(dukascopy_dir / "golden" / f"{rel}.csv")

    return read


@pytest.fixture(scope="session")
def golden_index(dukascopy_dir: Path) -> dict[str, dict[str, str]]:
    """``golden/INDEX.csv`` keyed by relative payload path (columns: kind, scale, rows, …)."""
    with (dukascopy_dir / "golden" / "INDEX.csv").open(newline="") as fh:
        return {row["path"]: row for row in csv.DictReader(fh)}


def _payload_files() -> dict[str, list[str]]:
    root = locate_shared_dir()
    kinds: dict[str, list[str]] = {
        "bi5_tick_file": [],
        "bi5_candle_file": [],
        "json_tick_file": [],
        "json_candle_file": [],
    }
    if root is None:
        return kinds
    base = root / "data" / "dukascopy"
    for p in sorted(base.glob("bi5/**/*.bi5")):
        rel = p.relative_to(base).as_posix()
        kinds["bi5_candle_file" if "_candles_" in p.name else "bi5_tick_file"].append(rel)
    for p in sorted(base.glob("json/ticks/**/*.json")):
        kinds["json_tick_file"].append(p.relative_to(base).as_posix())
    for p in sorted(base.glob("json/candles/**/*.json")):
        kinds["json_candle_file"].append(p.relative_to(base).as_posix())
    return kinds


_PAYLOAD_FILES = _payload_files()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for name, files in _PAYLOAD_FILES.items():
        if name in metafunc.fixturenames:
            params = files or [pytest.param(None, id="shared-data-absent")]
            metafunc.parametrize(name, params)
