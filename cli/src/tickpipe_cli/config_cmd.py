"""``tickpipe config show|check``: the effective settings with their origin, and a configuration
file validated without starting anything (``docs/configuration.md``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings
from rich import box
from rich.table import Table
from tickpipe_shared.config import Settings
from tickpipe_shared.config_file import (
    ConfigFileError,
    config_path,
    env_name,
    example_yaml,
    flatten,
    foreign_settings,
    layout,
    origins,
    read_sections,
)

from tickpipe_cli.output import console, err

app = typer.Typer(help="The configuration: environment > file (TICKPIPE_CONFIG) > defaults.")

#: How a secret that is set is shown.
MASK = "********"


def settings_classes() -> list[type[BaseSettings]]:
    """The shared settings and, when installed, those owning their own file section (API)."""
    classes: list[type[BaseSettings]] = [Settings]
    api = foreign_settings("api")
    if api is not None:
        classes.append(api)
    return classes


def shown(value: Any) -> Any:
    """``value`` as printed: secrets masked, containers as JSON-able values."""
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else ""
    if isinstance(value, dict):
        return {k: shown(v) for k, v in value.items()}
    return value


def effective_rows() -> list[dict[str, Any]]:
    """One row per setting: file key, environment variable, value (secrets masked), origin.

    Raises :class:`ConfigFileError` or :class:`pydantic.ValidationError` for a bad
    configuration."""
    rows: list[dict[str, Any]] = []
    for cls in settings_classes():
        settings = cls()
        where = origins(cls)
        for name, key in layout(cls).items():
            rows.append({
                "key": str(key), "env": env_name(cls, name),
                "value": shown(getattr(settings, name)), "origin": where[name],
            })  # fmt: skip
    return rows


def _explain(e: ValidationError, cls: type[BaseSettings]) -> list[str]:
    """The errors of ``e`` with each field named by its file key and environment variable."""
    keys = layout(cls)
    lines = []
    for error in e.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        where = f"{keys[name]} ({env_name(cls, name)})" if name in keys else name
        lines.append(f"{where}: {error['msg']}")
    return lines


@app.command("show")
def show(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Print every effective setting, where its value comes from (env, file, default) and the
    file key and variable that set it; secrets are masked."""
    try:
        rows = effective_rows()
    except ConfigFileError as e:
        err.print(str(e), markup=False, highlight=False)
        raise typer.Exit(2) from None
    except ValidationError as e:
        err.print(str(e), markup=False, highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    path = config_path()
    table = Table(
        title=f"tickpipe settings (file: {path or 'none'})", box=box.SIMPLE_HEAD, pad_edge=False
    )
    for col in ("file key", "environment variable", "value", "origin"):
        table.add_column(col, overflow="fold")
    for r in rows:
        value = r["value"]
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        table.add_row(
            r["key"],
            r["env"],
            text,
            r["origin"],
            style="bold" if r["origin"] != "default" else None,
        )
    console.print(table)


@app.command("check")
def check(file: Annotated[Path, typer.Argument(help="The configuration file to validate")]) -> None:
    """Validate FILE on its own (no environment, nothing started): sections, keys, values.
    Exit 0 when valid, 2 with one line per problem otherwise."""
    problems: list[str] = []
    count = 0
    try:
        sections = read_sections(file, Settings)
        for cls in settings_classes():
            values = flatten(sections, cls, file, check_foreign=False)
            count += len(values)
            try:
                cls.model_validate(values)
            except ValidationError as e:
                problems += [f"{file}: {line}" for line in _explain(e, cls)]
        flatten(sections, Settings, file)  # foreign sections not installed here: names only
    except ConfigFileError as e:
        problems.append(str(e))
    if problems:
        for line in problems:
            err.print(line, markup=False, highlight=False)
        raise typer.Exit(2)
    console.print(f"{file}: valid ({count} settings set)", markup=False, highlight=False)


@app.command("example")
def example() -> None:
    """Print a commented configuration file covering every setting (tickpipe.example.yaml)."""
    sys.stdout.write(example_yaml(settings_classes()))
