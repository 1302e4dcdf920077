"""Where the local stack keeps its files: repository root and the ``.local`` tree."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

#: Overrides the ``.local`` directory (absolute, or relative to the repository root).
LOCAL_DIR_ENV = "TICKPIPE_LOCAL_DIR"


class StackError(RuntimeError):
    """A step of the local stack failed; the message says what and where to look."""


def _is_workspace_root(directory: Path) -> bool:
    pyproject = directory / "pyproject.toml"
    if not pyproject.is_file():
        return False
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return False
    tool = data.get("tool", {})
    return isinstance(tool, dict) and "workspace" in tool.get("uv", {})


def find_repo_root(start: Path | None = None) -> Path:
    """The uv workspace root: the nearest ancestor whose pyproject.toml has ``[tool.uv.workspace]``.

    ``start`` defaults to this module's file, so the answer does not depend on the cwd (members'
    own pyproject.toml files, e.g. ``dev/pyproject.toml``, are skipped). Raises
    :class:`StackError` when no ancestor qualifies (e.g. the package was installed as a wheel).
    """
    origin = (start or Path(__file__)).resolve()
    for directory in (origin, *origin.parents):
        if _is_workspace_root(directory):
            return directory
    raise StackError(f"no pyproject.toml with [tool.uv.workspace] above {origin}")


@dataclass(frozen=True, slots=True)
class StackPaths:
    """Every path the stack reads or writes. Build one with :meth:`discover`."""

    root: Path
    local: Path

    @classmethod
    def discover(cls, root: Path | None = None) -> StackPaths:
        """Paths for the repository at ``root`` (default: :func:`find_repo_root`).

        ``$TICKPIPE_LOCAL_DIR`` replaces ``<root>/.local`` when set.
        """
        repo = (root or find_repo_root()).resolve()
        override = os.environ.get(LOCAL_DIR_ENV)
        local = (repo / override).resolve() if override else repo / ".local"
        return cls(root=repo, local=local)

    @property
    def run_dir(self) -> Path:
        """Pid files."""
        return self.local / "run"

    @property
    def log_dir(self) -> Path:
        """One log file per process."""
        return self.local / "log"

    @property
    def kafka_dir(self) -> Path:
        return self.local / "kafka"

    @property
    def kafka_libs(self) -> Path:
        """Runtime jars copied by Maven from ``deploy/local/pom.xml``."""
        return self.kafka_dir / "libs"

    @property
    def kafka_data(self) -> Path:
        """KRaft metadata log and topic partitions."""
        return self.kafka_dir / "data"

    @property
    def kafka_config(self) -> Path:
        """Rendered server.properties and log4j2.properties (rewritten on every start)."""
        return self.kafka_dir / "config"

    @property
    def pg_dir(self) -> Path:
        return self.local / "pg"

    @property
    def pg_data(self) -> Path:
        return self.pg_dir / "data"

    @property
    def pg_socket_dir(self) -> Path:
        """Unix socket directory; Debian's /var/run/postgresql may not exist or belong to others."""
        return self.pg_dir / "sock"

    @property
    def pg_server_dir(self) -> Path:
        """Private server trees with TimescaleDB built by ``bin/bootstrap``; ``current`` links
        to the one in use (``current/usr/lib/postgresql/<major>/bin``)."""
        return self.local / "pgserver"

    @property
    def kafka_pom(self) -> Path:
        return self.root / "deploy" / "local" / "pom.xml"

    @property
    def dukascopy_data(self) -> Path:
        """Recorded Dukascopy responses served by the stand-in (beside the repository)."""
        return self.root.parent / "shared" / "data" / "dukascopy"

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def ensure_dirs(self) -> None:
        """Create the run and log directories (idempotent)."""
        for directory in (self.run_dir, self.log_dir):
            directory.mkdir(parents=True, exist_ok=True)
