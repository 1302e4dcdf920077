"""``tickpipe`` CLI: the ``request`` command's validation (no Kafka: it fails before publishing)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from tickpipe_cli import main as cli_main
from tickpipe_cli import requests as request_ops
from tickpipe_cli.times import parse_time
from tickpipe_shared.config import get_settings
from typer.testing import CliRunner


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """No Kafka: publishing is recorded; logging config and settings cache are restored."""
    published: list[Any] = []

    async def fake_publish(settings: Any, request: Any) -> None:
        published.append(request)

    monkeypatch.setattr(request_ops, "publish", fake_publish)
    monkeypatch.delenv("TICKPIPE_DEFAULT_SOURCE", raising=False)
    get_settings.cache_clear()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    aiokafka_level = logging.getLogger("aiokafka").level
    yield published
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(aiokafka_level)
    get_settings.cache_clear()


def run(*args: str) -> Any:
    return CliRunner().invoke(cli_main.app, list(args))


def flat(text: str) -> str:
    """Rich wraps long lines: compare with whitespace collapsed."""
    return re.sub(r"\s+", " ", text)


def output_of(result: Any) -> str:
    parts = [result.output]
    try:
        parts.append(result.stderr)
    except ValueError:
        pass
    return flat(" ".join(parts))


@pytest.mark.parametrize("to", ["2019-02-04", "2019-02-03T12:00:00Z"])
def test_request_from_not_before_to_exits_2(isolated: list[Any], to: str) -> None:
    result = run("request", "EURUSD", "--from", "2019-02-04", "--to", to)
    assert result.exit_code == 2
    out = output_of(result)
    assert "'from' (2019-02-04T00:00:00+00:00) must be before 'to'" in out
    assert isolated == []


def test_request_bad_date_format(isolated: list[Any]) -> None:
    result = run("request", "EURUSD", "--from", "04/02/2019", "--to", "2019-02-05")
    assert result.exit_code == 2
    out = output_of(result)
    assert "'04/02/2019' is not an ISO-8601 date or time (UTC)" in out
    assert isolated == []


def test_request_unknown_source(isolated: list[Any]) -> None:
    result = run(
        "request", "EURUSD", "--from", "2019-02-04", "--to", "2019-02-05", "--source", "bloomberg"
    )
    assert result.exit_code == 2
    assert (
        "source: Input should be 'dukascopy-json', 'dukascopy-bi5', 'deriv', 'polygon' or "
        "'synthetic'" in output_of(result)
    )
    assert isolated == []


def test_request_missing_option(isolated: list[Any]) -> None:
    result = run("request", "EURUSD", "--from", "2019-02-04")
    assert result.exit_code == 2
    assert "--to" in output_of(result)


def test_request_valid_is_published(isolated: list[Any]) -> None:
    result = run(
        "request",
        "eurusd",
        "--from",
        "2019-02-04T10:00",
        "--to",
        "2019-02-04T14:00+02:00",
        "--source",
        "dukascopy-bi5",
    )
    assert result.exit_code == 0, result.output
    [req] = isolated
    assert req.source == "dukascopy-bi5" and req.instrument == "eurusd"
    assert req.from_.isoformat() == "2019-02-04T10:00:00+00:00"
    assert req.to.isoformat() == "2019-02-04T12:00:00+00:00"
    out = output_of(result)
    assert f"published request {req.request_id}" in out
    assert "2019-02-04T10:00Z → 2019-02-04T12:00Z" in out


def test_request_default_source_from_settings(
    isolated: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKPIPE_DEFAULT_SOURCE", "dukascopy-bi5")
    get_settings.cache_clear()
    result = run("request", "EURUSD", "--from", "2019-02-04", "--to", "2019-02-05")
    assert result.exit_code == 0, result.output
    assert isolated[0].source == "dukascopy-bi5"


def test_parse_time() -> None:
    assert parse_time("2019-02-04").isoformat() == "2019-02-04T00:00:00+00:00"
    assert parse_time("2019-02-04T13:00Z").isoformat() == "2019-02-04T13:00:00+00:00"
    assert parse_time("2019-02-04T15:00+02:00").isoformat() == "2019-02-04T13:00:00+00:00"


def test_request_candles_publishes_kind_timeframe_side(isolated: list[Any]) -> None:
    result = run(
        "request", "EURUSD", "--from", "2019-02-04", "--to", "2019-02-06", "--source",
        "dukascopy-bi5", "--kind", "candles", "--timeframe", "60s", "--side", "ask",
    )  # fmt: skip
    assert result.exit_code == 0, output_of(result)
    (req,) = isolated
    assert (req.kind, req.timeframe, req.side, req.skip_existing) == (
        "candles",
        "60s",
        "ask",
        False,
    )
    assert str(req.unit_kind) == "candles:1m:ask"
    assert "candles:1m:ask" in output_of(result)


def test_request_polygon_ticker_with_colon_and_skip_existing(isolated: list[Any]) -> None:
    result = run(
        "request", "C:EURUSD", "--from", "2023-01-01", "--to", "2023-01-10", "--source",
        "polygon", "--kind", "candles", "--timeframe", "1d", "--skip-existing",
    )  # fmt: skip
    assert result.exit_code == 0, output_of(result)
    (req,) = isolated
    assert req.instrument == "C:EURUSD" and req.skip_existing
    assert str(req.unit_kind) == "candles:1d:trade"
    assert "skipping existing units" in output_of(result)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--kind", "candles"], "timeframe: a candle request needs a timeframe"),
        (["--kind", "candles", "--timeframe", "5m"], "does not serve 5m candles"),
        (["--timeframe", "1h"], "only candle requests take a timeframe"),
        (["--source", "polygon"], "source 'polygon' serves candles, not 'ticks'"),
    ],
)
def test_request_kind_errors_exit_2_before_publishing(
    isolated: list[Any], args: list[str], reason: str
) -> None:
    result = run("request", "EURUSD", "--from", "2019-02-04", "--to", "2019-02-05", *args)
    assert result.exit_code == 2
    assert reason in output_of(result)
    assert isolated == []
