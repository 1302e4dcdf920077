"""Parsing the CLI's time options."""

from __future__ import annotations

from datetime import UTC, datetime

import typer


def parse_time(value: str, option: str | None = None) -> datetime:
    """``2019-02-04`` or ``2019-02-04T13:00[:00][Z]`` as an aware UTC datetime (naive = UTC).

    Raises :class:`typer.BadParameter` naming ``option`` when ``value`` is not ISO-8601.
    """
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO-8601 date or time (UTC)", param_hint=option
        ) from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
