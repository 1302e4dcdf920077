"""What the ``tickpipe`` CLI offers, for tests that check manifests run real commands."""

from __future__ import annotations

from typing import Any

import typer.main


def cli_commands() -> set[tuple[str, ...]]:
    """Every ``tickpipe`` command path, e.g. ``("db", "migrate")``."""
    from tickpipe_cli.main import app

    out: set[tuple[str, ...]] = set()

    def walk(group: Any, path: tuple[str, ...]) -> None:
        for name, sub in getattr(group, "commands", {}).items():
            out.add((*path, name))
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return out
