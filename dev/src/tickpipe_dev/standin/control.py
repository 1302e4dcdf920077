"""Runtime control of the stand-in's settings (``POST /_control``, ``/_deriv/control``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, fields, is_dataclass
from typing import Any, Protocol, TypeVar


class _Validated(Protocol):
    def validate(self) -> None: ...


S = TypeVar("S", bound=_Validated)


def updated(settings: S, changes: Mapping[str, Any]) -> S:
    """A copy of the dataclass ``settings`` with ``changes`` applied and validated.

    Raises :class:`ValueError` for an unknown key, a value of the wrong type (an int is
    accepted where a float is expected, a bool never is) or a value ``validate()`` refuses.
    """
    assert is_dataclass(settings) and not isinstance(settings, type)
    known = {f.name for f in fields(settings)}
    values = asdict(settings)
    for key, value in changes.items():
        if key not in known:
            raise ValueError(f"unknown fault setting {key!r} (known: {', '.join(known)})")
        current = values[key]
        if isinstance(value, bool) or not isinstance(value, type(current) | int):
            raise ValueError(f"{key} must be {type(current).__name__}, got {value!r}")
        values[key] = type(current)(value)
    new: S = type(settings)(**values)
    new.validate()
    return new
