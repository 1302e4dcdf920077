"""``tickpipe export`` without a database: months, formatting, writers, --verify, arguments."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tickpipe_cli import export as ex
from tickpipe_cli import main as cli_main
from tickpipe_cli.export import writers
from tickpipe_shared.db.export import TICK_COLUMNS, Month, months
from typer.testing import CliRunner


def d(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[arg-type,misc]


def test_months_cut_the_range_at_calendar_months() -> None:
    got = [(m.label, m.start, m.end) for m in months(d(2020, 11, 15, 6), d(2021, 2, 1))]
    assert got == [
        ("2020-11", d(2020, 11, 15, 6), d(2020, 12, 1)),
        ("2020-12", d(2020, 12, 1), d(2021, 1, 1)),
        ("2021-01", d(2021, 1, 1), d(2021, 2, 1)),
    ]
    assert [m.label for m in months(d(2021, 3, 1), d(2021, 3, 1, 1))] == ["2021-03"]
    with pytest.raises(ValueError, match="empty range"):
        list(months(d(2021, 3, 1), d(2021, 3, 1)))


def test_iso_ms_and_csv_formatting_are_exact() -> None:
    assert ex.iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert ex.iso_ms(1_614_556_800_123) == "2021-03-01T00:00:00.123Z"
    assert ex.iso_ms(d(2021, 3, 1, 10)) == "2021-03-01T10:00:00.000Z"
    assert writers._csv_column("ts", [1_614_556_800_123], 5) == ["2021-03-01T00:00:00.123Z"]
    # float8 points / 10^scale, formatted at the scale: the exact decimal, zeros kept.
    assert writers._csv_column("bid", [112345 / 10**5, 112300 / 10**5], 5) == ["1.12345", "1.12300"]
    assert writers._csv_column("bid", [110130 / 10**3], 3) == ["110.130"]
    assert writers._csv_column("ask", [0.1 + 0.2], 3) == ["0.300"]
    assert writers._csv_column("mid_open", [(1.12345 + 1.12346) / 2], 5) == ["1.123455"]
    assert writers._csv_column("bid_volume", [1.25, None, 2.06, 1e-05], 5) == ["1.25", "", "2.06",
                                                                            "1e-05"]  # fmt: skip
    assert writers._csv_column("flags", [0, 3], 5) == ["0", "3"]


def write_month(root: Path, fmt: str, rows: list[tuple[Any, ...]]) -> Path:
    """A data file and sidecar as the exporter writes them, without a database."""
    month = Month(2021, 3, d(2021, 3, 1), d(2021, 4, 1))
    path = ex.data_path(root, "EURUSD", "ticks", None, fmt, month)
    path.parent.mkdir(parents=True)
    w = writers.WRITERS[fmt](path, TICK_COLUMNS, 5, {"tickpipe.price_scale": "5"})
    w.write(rows)
    w.close()
    side = {
        "schema_version": 1, "format": fmt, "rows": len(rows), "columns": list(TICK_COLUMNS),
        "first_ts": ex.iso_ms(rows[0][0]), "last_ts": ex.iso_ms(rows[-1][0]),
        "range": {"from": ex.iso_ms(month.start), "to": ex.iso_ms(month.end)},
        "sha256": ex.sha256_file(path), "price_scale": 5,
    }  # fmt: skip
    ex.sidecar_path(path).write_text(json.dumps(side))
    return path


ROWS = [(1_614_556_800_000 + i * 250, 1.12345, 1.1235, 1.25, None, 0) for i in range(10)]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_verify_ok_then_each_failure_has_its_reason(tmp_path: Path, fmt: str) -> None:
    path = write_month(tmp_path, fmt, ROWS)
    (check,) = ex.verify(tmp_path)
    assert check.ok and check.rows == 10, check

    side = json.loads(ex.sidecar_path(path).read_text())
    side["rows"], side["last_ts"] = 11, "2021-03-01T00:00:09.000Z"
    ex.sidecar_path(path).write_text(json.dumps(side))
    (check,) = ex.verify(tmp_path)
    assert check.reasons == (
        "10 rows in the file, sidecar says 11",
        "last_ts in the file is 2021-03-01T00:00:02.250Z, sidecar says 2021-03-01T00:00:09.000Z",
    )

    path.write_bytes(path.read_bytes()[:-7])
    (check,) = ex.verify(tmp_path)
    assert not check.ok and check.reasons[0].startswith("sha256 mismatch")

    path.unlink()
    (path.parent / "2021-04.csv").write_text("ts\n")
    checks = ex.verify(tmp_path)
    assert [(c.path.name, c.reasons) for c in checks] == [
        (path.name, ("data file is missing",)),
        ("2021-04.csv", ("no sidecar",)),
    ]


def test_verify_checks_order_and_range(tmp_path: Path) -> None:
    rows = [ROWS[1], ROWS[0], (1_617_235_200_000, *ROWS[0][1:])]  # unordered, one in April
    write_month(tmp_path, "csv", rows)
    (check,) = ex.verify(tmp_path)
    assert "rows out of time order at row 2 (2021-03-01T00:00:00.000Z)" in check.reasons
    assert any("is not before the range end" in r for r in check.reasons)


class Out:
    def __init__(self, exit_code: int, output: str) -> None:
        self.exit_code, self.output = exit_code, output


def run(*args: str) -> Out:
    """The command's exit code and output, rich's wrapping and box characters collapsed."""
    r = CliRunner().invoke(cli_main.app, ["export", *args])
    return Out(r.exit_code, re.sub(r"[\s│]+", " ", r.output))


def test_cli_arguments(tmp_path: Path) -> None:
    r = run("--verify", str(tmp_path), "EURUSD")
    assert r.exit_code == 2 and "--verify takes no INSTRUMENT" in r.output
    r = run("EURUSD", "--from", "2021-01-01")
    assert r.exit_code == 2 and "missing --to, --out" in r.output
    base = ["EURUSD", "--from", "2021-01-01", "--to", "2021-02-01", "--out", str(tmp_path)]
    r = run(*base, "--timeframe", "1h")
    assert r.exit_code == 2 and "only with --kind candles" in r.output
    r = run(*base, "--kind", "candles", "-t", "15m")
    assert r.exit_code == 2 and "expected one of 1m, 5m, 1h, 1d" in r.output
    r = run(*base, "--format", "xlsx")
    assert r.exit_code == 2 and "csv, parquet" in r.output
    r = run("EURUSD", "--from", "2021-02-01", "--to", "2021-01-01", "--out", str(tmp_path))
    assert r.exit_code == 2 and "must be after --from" in r.output
    r = run("--verify", str(tmp_path))
    assert r.exit_code == 1 and "no exported files" in r.output
    write_month(tmp_path, "csv", ROWS)
    r = run("--verify", str(tmp_path))
    assert r.exit_code == 0 and "1 OK, 0 failed" in r.output


def test_source_candle_kinds_folders_and_formatting(tmp_path: Path) -> None:
    month = Month(2021, 3, d(2021, 3, 1), d(2021, 4, 1))
    assert ex.check_kind("candles:60s:bid", None) == ("candles:1m:bid", "1m", "bid")
    assert ex.check_kind("candles:1mo:trade", "1mo") == ("candles:1mo:trade", "1mo", "trade")
    assert ex.check_kind("candles", "5m") == ("candles", "5m", None)
    for kind, timeframe, message in [
        ("candles:1m:spread", None, "side 'spread' is not one of"),
        ("candles:1m", None, "kind 'candles:1m' is neither"),
        ("candles:1m:bid", "1h", "has its timeframe"),
        ("candles", "2h", "unknown timeframe '2h'"),
        ("quotes", None, "unknown kind 'quotes'"),
    ]:
        with pytest.raises(ex.ExportError, match=message):
            ex.check_kind(kind, timeframe)
    path = ex.data_path(tmp_path, "EURUSD", "candles:1m:bid", "1m", "csv", month)
    assert path == tmp_path / "EURUSD" / "candles-1m-bid" / "2021" / "2021-03.csv"
    assert ex.data_path(tmp_path, "EURUSD", "candles", "1h", "csv", month).parent.parent.name == (
        "candles-1h"
    )
    # Source candles: prices at the scale (no extra mid decimal: a Deriv mid is a quote),
    # volume empty when NULL.
    assert writers._csv_column("open", [112345 / 10**5], 5) == ["1.12345"]
    assert writers._csv_column("close", [12.3], 2) == ["12.30"]
    assert writers._csv_column("volume", [None, 2.5], 5) == ["", "2.5"]
    assert writers._arrow_type("volume") == writers._arrow_type("open") == writers.pa.float64()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_source_candle_files_verify(tmp_path: Path, fmt: str) -> None:
    from tickpipe_shared.db.export import SOURCE_CANDLE_EXPORT_COLUMNS

    month = Month(2021, 3, d(2021, 3, 1), d(2021, 4, 1))
    path = ex.data_path(tmp_path, "R50", "candles:1m:mid", "1m", fmt, month)
    path.parent.mkdir(parents=True)
    rows = [(1_614_556_800_000 + i * 60_000, 25.12, 25.2, 25.1, 25.15, None, 0) for i in range(5)]
    w = writers.WRITERS[fmt](path, SOURCE_CANDLE_EXPORT_COLUMNS, 2, {"tickpipe.price_scale": "2"})
    w.write(rows)
    w.close()
    side = {
        "schema_version": 1, "format": fmt, "rows": 5,
        "columns": list(SOURCE_CANDLE_EXPORT_COLUMNS),
        "first_ts": ex.iso_ms(rows[0][0]), "last_ts": ex.iso_ms(rows[-1][0]),
        "range": {"from": ex.iso_ms(month.start), "to": ex.iso_ms(month.end)},
        "sha256": ex.sha256_file(path), "price_scale": 2,
    }  # fmt: skip
    ex.sidecar_path(path).write_text(json.dumps(side))
    (check,) = ex.verify(tmp_path)
    assert check.ok and check.rows == 5, check
    if fmt == "csv":
        assert (
            path.read_text().splitlines()[1]
            == "2021-03-01T00:00:00.000Z,25.12,25.20,25.10,25.15,,0"
        )


def test_cli_source_candle_arguments(tmp_path: Path) -> None:
    base = ["EURUSD", "--from", "2021-01-01", "--to", "2021-02-01", "--out", str(tmp_path)]
    r = run(*base, "--kind", "candles:1m:spread")
    assert r.exit_code == 2 and "side 'spread' is not one of" in r.output
    r = run(*base, "--kind", "candles:1m:bid", "-t", "1m")
    assert r.exit_code == 2 and "only with --kind candles" in r.output
    r = run(*base, "--kind", "quotes")
    assert r.exit_code == 2 and "candles:<timeframe>:<side>" in r.output
