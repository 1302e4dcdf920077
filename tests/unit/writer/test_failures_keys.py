"""``tickpipe_writer.failures``: unit keys parsed back, failures turned into ledger rows (pure)."""

from __future__ import annotations

import pytest
from tickpipe_shared.units import HOUR_MS, Unit, hour_units, ms_to_iso, parse_unit_key, plan_units
from tickpipe_shared.wire.failures import Failure
from tickpipe_writer.failures import STAGE, FailedUnit, failed_unit, latest_per_unit

T0 = 1_549_238_400_000  # 2019-02-04T00:00:00Z


def test_unit_keys_round_trip() -> None:
    for unit in hour_units("dukascopy-bi5", "EURUSD", T0, T0 + 5 * HOUR_MS):
        assert parse_unit_key(unit.key) == unit
    key = "dukascopy-json|USA500IDXUSD|ticks|2024-01-15T14:00:00Z"
    unit = parse_unit_key(key)
    assert unit == Unit(
        "dukascopy-json", "USA500IDXUSD", "ticks", 1_705_327_200_000, 1_705_327_200_000 + HOUR_MS
    )
    assert unit is not None and unit.key == key


@pytest.mark.parametrize(
    ("kind", "start", "end"),
    [
        # Sub-minute candles: hour units; minute candles: day units; hour candles: month units
        # (February 2019: 28 days; a leap February: 29); day and coarser candles: year units.
        ("candles:1s:trade", "2019-02-04T05:00:00Z", "2019-02-04T06:00:00Z"),
        ("candles:1m:bid", "2019-02-04T00:00:00Z", "2019-02-05T00:00:00Z"),
        ("candles:5m:mid", "2019-12-31T00:00:00Z", "2020-01-01T00:00:00Z"),
        ("candles:1h:ask", "2019-02-01T00:00:00Z", "2019-03-01T00:00:00Z"),
        ("candles:4h:mid", "2020-02-01T00:00:00Z", "2020-03-01T00:00:00Z"),
        ("candles:1d:bid", "2019-01-01T00:00:00Z", "2020-01-01T00:00:00Z"),
        ("candles:1w:trade", "2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z"),
        ("candles:1mo:trade", "2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z"),
    ],
)
def test_candle_unit_keys_end_with_their_span(kind: str, start: str, end: str) -> None:
    key = f"polygon|EURUSD|{kind}|{start}"
    unit = parse_unit_key(key)
    assert unit is not None and unit.key == key
    assert (unit.kind, ms_to_iso(unit.start_ms), ms_to_iso(unit.end_ms)) == (kind, start, end)
    for u in plan_units("polygon", "EURUSD", kind, unit.start_ms, unit.end_ms + 1):
        assert parse_unit_key(u.key) == u


def test_ticks_units_last_one_hour() -> None:
    unit = parse_unit_key("s|EURUSD|ticks|2019-02-04T23:00:00Z")
    assert unit is not None and unit.end_ms - unit.start_ms == HOUR_MS


@pytest.mark.parametrize(
    "key",
    [
        None,
        "",
        "EURUSD",  # a rejected request, keyed by instrument
        "req-unknown",
        "dukascopy-bi5|EURUSD|ticks",  # three fields
        "dukascopy-bi5|EURUSD|ticks|2019-02-04T00:00:00Z|x",  # five
        "|EURUSD|ticks|2019-02-04T00:00:00Z",  # empty source
        "dukascopy-bi5||ticks|2019-02-04T00:00:00Z",  # empty instrument
        "dukascopy-bi5|EUR USD|ticks|2019-02-04T00:00:00Z",  # blank inside
        "dukascopy-bi5|EURUSD|candles|2019-02-04T00:00:00Z",  # neither ticks nor a candle kind
        "dukascopy-bi5|EURUSD|ticks|2019-02-04T00:30:00Z",  # not on the hour
        "dukascopy-bi5|EURUSD|ticks|2019-02-04T00:00:01Z",
        "dukascopy-bi5|EURUSD|ticks|2019-02-04T00:00:00",  # no Z
        "dukascopy-bi5|EURUSD|ticks|2019-02-04T00:00:00+00:00",
        "dukascopy-bi5|EURUSD|ticks|2019-02-04T00:00Z",
        "dukascopy-bi5|EURUSD|ticks|2019-02-04",
        "dukascopy-bi5|EURUSD|ticks|2019-13-04T00:00:00Z",  # month 13
        "dukascopy-bi5|EURUSD|ticks|2019-02-30T00:00:00Z",
        "dukascopy-bi5|EURUSD|ticks|2019-02-04T24:00:00Z",
        "dukascopy-bi5|EURUSD|ticks|1549238400000",
        "dukascopy-bi5|EURUSD|candles:1m|2019-02-04T00:00:00Z",  # no side
        "dukascopy-bi5|EURUSD|candles:1m:spread|2019-02-04T00:00:00Z",  # unknown side
        "dukascopy-bi5|EURUSD|candles:7x:bid|2019-02-04T00:00:00Z",  # unknown timeframe
        "dukascopy-bi5|EURUSD|candles:60s:bid|2019-02-04T00:00:00Z",  # not canonical (1m)
        "dukascopy-bi5|EURUSD|candles:1m:bid|2019-02-04T01:00:00Z",  # inside a day unit
        "dukascopy-bi5|EURUSD|candles:1h:bid|2019-02-04T00:00:00Z",  # inside a month unit
        "dukascopy-bi5|EURUSD|candles:1d:bid|2019-02-01T00:00:00Z",  # inside a year unit
    ],
)
def test_other_keys_are_not_units(key: str | None) -> None:
    assert parse_unit_key(key) is None


def failure(unit_key: str | None, stage: str = "fetcher", attempt: int = 5, **kw: str) -> Failure:
    return Failure(
        stage=stage,
        reason=kw.get("reason", "HTTP 503 after 5 attempts"),
        error_class="DownloadError",
        key=unit_key,
        unit_key=unit_key,
        attempt=attempt,
        request_id=kw.get("request_id", "r1"),
    )


def test_failure_naming_a_unit_becomes_a_failed_row() -> None:
    key = "dukascopy-bi5|EURUSD|ticks|2019-02-04T00:00:00Z"
    row = failed_unit(failure(key))
    assert row == FailedUnit(
        Unit("dukascopy-bi5", "EURUSD", "ticks", T0, T0 + HOUR_MS),
        "fetcher",
        "HTTP 503 after 5 attempts",
        5,
        "r1",
    )
    zero = failed_unit(failure(key, attempt=0))
    assert zero is not None and zero.attempts == 1


def test_failures_not_about_a_unit_are_skipped() -> None:
    assert failed_unit(failure("EURUSD", stage="fetcher-planner")) is None
    assert failed_unit(failure(None, stage="fetcher-planner")) is None
    # The runtime's failure about a record of this very processor: never recorded (no loop).
    assert failed_unit(failure("s|EURUSD|ticks|2019-02-04T00:00:00Z", stage=STAGE)) is None


def test_latest_failure_per_unit_wins() -> None:
    a0 = failed_unit(failure("a|EURUSD|ticks|2019-02-04T00:00:00Z", reason="first"))
    b = failed_unit(failure("a|EURUSD|ticks|2019-02-04T01:00:00Z"))
    # Same database unit from another source: one ledger row.
    a1 = failed_unit(
        failure("b|EURUSD|ticks|2019-02-04T00:00:00Z", stage="decoder", reason="second")
    )
    assert a0 and b and a1
    assert latest_per_unit([a0, b, a1, b]) == [a1, b]
    assert latest_per_unit([]) == []
