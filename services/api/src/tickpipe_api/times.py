"""Time parameters: ISO 8601 (an offset is converted to UTC; naive = UTC) or epoch milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime

from tickpipe_api.problems import bad_parameter


def parse_time(value: str, parameter: str) -> datetime:
    """``2019-02-04``, ``2019-02-04T13:00:00+01:00``, ``…Z`` or ``1549238400000`` (epoch ms) as
    an aware UTC datetime. Raises a 422 :class:`~tickpipe_api.problems.Problem` naming
    ``parameter`` otherwise."""
    text = value.strip()
    if text.lstrip("-").isdigit():
        try:
            return datetime.fromtimestamp(int(text) / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            raise bad_parameter(parameter, f"{value!r} is out of range as epoch ms") from None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise bad_parameter(
            parameter, f"{value!r} is neither ISO 8601 (e.g. 2019-02-04T13:00:00Z) nor epoch ms"
        ) from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def parse_range(start: str, end: str) -> tuple[datetime, datetime]:
    """``[start, end)`` parsed; 422 when ``end`` is not after ``start``."""
    lo, hi = parse_time(start, "start"), parse_time(end, "end")
    if hi <= lo:
        raise bad_parameter("end", f"end ({iso(hi)}) must be after start ({iso(lo)})")
    return lo, hi


def iso(dt: datetime) -> str:
    """ISO 8601 UTC with ``Z`` (milliseconds when not whole seconds)."""
    dt = dt.astimezone(UTC)
    spec = "milliseconds" if dt.microsecond else "seconds"
    return dt.isoformat(timespec=spec).replace("+00:00", "Z")
