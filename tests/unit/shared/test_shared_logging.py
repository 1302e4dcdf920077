"""``tickpipe_shared.logging``: secret scrubbing and JSON log lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from tickpipe_shared.logging import REDACTED, configure_logging, redact_secrets, scrub


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    aiokafka_level = logging.getLogger("aiokafka").level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(aiokafka_level)


# --- scrub ------------------------------------------------------------------------------------


def test_scrub_url_password() -> None:
    assert scrub("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert (
        scrub("connect to postgresql://tickpipe:hunter2@127.0.0.1:55432/tickpipe failed")
        == "connect to postgresql://tickpipe:***@127.0.0.1:55432/tickpipe failed"
    )


def test_scrub_query_secrets() -> None:
    assert scrub("https://api.test/v1/x?apiKey=abc123") == "https://api.test/v1/x?apiKey=***"
    assert (
        scrub("https://h/p?a=1&token=zzz&api_key=k&b=2")
        == "https://h/p?a=1&token=***&api_key=***&b=2"
    )
    assert scrub("GET /q?PASSWORD=x y") == "GET /q?PASSWORD=*** y"


def test_scrub_leaves_harmless_text_alone() -> None:
    for text in (
        "https://datafeed.test/datafeed/EURUSD/2019/01/04/05h_ticks.bi5",
        "https://api.test/v1/ticks/EUR-USD?from=1549238400000",
        "postgresql://u@h/db",
        "plain message: a:b",
    ):
        assert scrub(text) == text


def test_scrub_several_urls() -> None:
    out = scrub("a=postgresql://u:p1@h/db b=redis://x:p2@r:6379")
    assert "p1" not in out and "p2" not in out
    assert out == "a=postgresql://u:***@h/db b=redis://x:***@r:6379"


# --- redact_secrets processor -----------------------------------------------------------------


def test_redact_secrets_masks_secret_keys() -> None:
    event = {
        "event": "x",
        "password": "hunter2",
        "database_url": "postgresql://u:pw@h/db",
        "token": "t0k",
        "api_key": "k",
        "DSN": "whatever",
        "client_secret": "s",
        "unit": "dukascopy-json|EURUSD|ticks|2019-02-04T00:00:00Z",
    }
    out = redact_secrets(None, "info", dict(event))
    for key in ("password", "database_url", "token", "api_key", "DSN", "client_secret"):
        assert out[key] == REDACTED, key
    assert out["unit"] == event["unit"]
    assert out["event"] == "x"


def test_redact_secrets_scrubs_values_and_nested_structures() -> None:
    out = redact_secrets(
        None,
        "info",
        {
            "event": "cannot connect to postgresql://u:pw@h/db",
            "error": "GET https://h/p?apiKey=SECRET failed",
            "config": {"password": "p", "host": "h", "inner": {"token": "t"}},
            "urls": ["postgresql://a:b@c/d", ("https://x?token=y",)],
            "count": 3,
        },
    )
    assert out["event"] == "cannot connect to postgresql://u:***@h/db"
    assert out["error"] == "GET https://h/p?apiKey=*** failed"
    assert out["config"] == {"password": REDACTED, "host": "h", "inner": {"token": REDACTED}}
    assert out["urls"] == ["postgresql://a:***@c/d", ["https://x?token=***"]]
    assert out["count"] == 3


# --- configure_logging ------------------------------------------------------------------------


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_configure_logging_json_lines_with_bound_unit(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("decoder", "INFO", stream=stream)
    log = structlog.get_logger()
    structlog.contextvars.bind_contextvars(unit="dukascopy-bi5|EURUSD|ticks|2019-02-04T00:00:00Z")
    log.info("unit decoded", rows=12, password="hunter2")
    log.debug("not shown at INFO")
    structlog.contextvars.unbind_contextvars("unit")
    log.warning("after unbind", dsn="postgresql://u:pw@h/db")
    got = lines(stream)
    assert len(got) == 2
    first, second = got
    assert first["msg"] == "unit decoded"
    assert first["unit"] == "dukascopy-bi5|EURUSD|ticks|2019-02-04T00:00:00Z"
    assert first["service"] == "decoder"
    assert first["level"] == "info"
    assert first["rows"] == 12
    assert first["password"] == REDACTED
    assert isinstance(first["timestamp"], str) and first["timestamp"].endswith("Z")
    assert "unit" not in second
    assert second["level"] == "warning"
    assert second["dsn"] == REDACTED
    assert "hunter2" not in stream.getvalue() and ":pw@" not in stream.getvalue()


def test_configure_logging_level_filters(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("writer", "warning", stream=stream)
    log = structlog.get_logger()
    log.info("hidden")
    log.error("shown", url="https://h/p?token=abc")
    got = lines(stream)
    assert [g["msg"] for g in got] == ["shown"]
    assert got[0]["url"] == "https://h/p?token=***"


def test_configure_logging_stdlib_lines_are_json_and_scrubbed(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("fetcher", "INFO", stream=stream)
    logging.getLogger("some.library").warning("lost postgresql://u:secretpw@h/db")
    logging.getLogger("aiokafka").info("chatty, below WARNING for aiokafka")
    got = lines(stream)
    assert len(got) == 1
    assert got[0]["msg"] == "lost postgresql://u:***@h/db"
    assert got[0]["logger"] == "some.library"
    assert got[0]["service"] == "fetcher"
    assert got[0]["level"] == "warning"


def test_configure_logging_unknown_level_falls_back_to_info(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("cli", "LOUD", stream=stream)
    log = structlog.get_logger()
    log.debug("hidden")
    log.info("shown")
    assert [g["msg"] for g in lines(stream)] == ["shown"]
