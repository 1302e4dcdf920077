"""Structured JSON logging (structlog) with secrets scrubbed before anything is written.

Every service calls :func:`configure_logging` once. Context such as the unit key is bound with
:func:`structlog.contextvars.bind_contextvars` so that every line about a unit carries it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog

_SECRET_KEY = re.compile(r"(password|passwd|secret|token|api_?key|apikey|database_url|dsn)", re.I)
# user:password@ in URLs, and key=/token= query parameters.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]+):[^@\s]+@", re.I)
_QUERY_SECRET = re.compile(r"(?P<k>[?&](?:api_?key|apikey|token|app_id|password)=)[^&\s]+", re.I)

REDACTED = "***"


def scrub(text: str) -> str:
    """Return ``text`` with URL passwords and secret query parameters replaced by ``***``."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}:{REDACTED}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m.group('k')}{REDACTED}", text)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: REDACTED if _SECRET_KEY.search(str(k)) else _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    # SecretStr and friends print as '**********' already; anything else is stringified lazily.
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: masks values of secret-looking keys and passwords inside strings."""
    for key in list(event_dict):
        if _SECRET_KEY.search(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact(event_dict[key])
    return event_dict


class _StdStream:
    """``sys.stdout``/``sys.stderr`` looked up at every write, not when logging is configured:
    whoever swaps them later (pytest's capture, click's runner, a daemoniser) is followed, and a
    replaced stream that was closed is never written to."""

    def __init__(self, name: str) -> None:
        self.name = name

    def write(self, text: str) -> int:
        return getattr(sys, self.name).write(text)  # type: ignore[no-any-return]

    def flush(self) -> None:
        getattr(sys, self.name).flush()


def configure_logging(
    service: str, level: str = "INFO", stream: TextIO | Literal["stdout", "stderr"] = "stdout"
) -> None:
    """Send JSON lines to ``stream`` for ``service`` at ``level``; stdlib logging goes there too.

    ``"stdout"``/``"stderr"`` mean the process's current standard stream at each write.
    """
    out: Any = _StdStream(stream) if isinstance(stream, str) else stream
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.processors.EventRenamer("msg"),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        # Not cached: a module-level logger would otherwise freeze the configuration it first
        # saw, so a later configure_logging (or a test's capture_logs) would not reach it. We
        # log per unit, not per tick: the lookup costs nothing measurable.
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries (aiokafka, asyncio) log through stdlib: render those lines as JSON as well.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact_secrets,
                structlog.processors.EventRenamer("msg"),
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def get_logger(**initial: Any) -> Any:
    """A structlog logger, optionally with initial bound values."""
    return structlog.get_logger(**initial)
