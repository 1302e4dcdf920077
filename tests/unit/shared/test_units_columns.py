"""``tickpipe_shared.units`` (hour units, keys) and ``tickpipe_shared.columns`` (Ticks)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tickpipe_shared.columns import TICK_COLUMNS, Ticks
from tickpipe_shared.units import HOUR_MS, Unit, dt_to_ms, hour_units, ms_to_iso

T0 = 1_549_238_400_000  # 2019-02-04T00:00:00Z


def test_ms_to_iso_and_dt_to_ms() -> None:
    assert ms_to_iso(T0) == "2019-02-04T00:00:00Z"
    assert ms_to_iso(T0 + 1999) == "2019-02-04T00:00:01Z"
    assert dt_to_ms(datetime(2019, 2, 4)) == T0  # naive → UTC
    assert dt_to_ms(datetime(2019, 2, 4, 2, tzinfo=timezone(timedelta(hours=2)))) == T0


def test_unit_key() -> None:
    u = Unit("dukascopy-json", "EURUSD", "ticks", T0 + 13 * HOUR_MS, T0 + 14 * HOUR_MS)
    assert u.key == "dukascopy-json|EURUSD|ticks|2019-02-04T13:00:00Z"


def test_hour_units_floors_from_and_covers_to() -> None:
    units = hour_units("s", "EURUSD", T0 + 30 * 60_000, T0 + 3 * HOUR_MS)
    assert [u.start_ms for u in units] == [T0, T0 + HOUR_MS, T0 + 2 * HOUR_MS]
    assert all(u.end_ms == u.start_ms + HOUR_MS for u in units)
    assert all((u.source, u.instrument, u.kind) == ("s", "EURUSD", "ticks") for u in units)
    assert [u.key for u in units] == [
        "s|EURUSD|ticks|2019-02-04T00:00:00Z",
        "s|EURUSD|ticks|2019-02-04T01:00:00Z",
        "s|EURUSD|ticks|2019-02-04T02:00:00Z",
    ]


def test_hour_units_partial_last_hour_included() -> None:
    units = hour_units("s", "X", T0, T0 + HOUR_MS + 1)
    assert [u.start_ms for u in units] == [T0, T0 + HOUR_MS]


def test_hour_units_two_days() -> None:
    assert len(hour_units("s", "X", T0, T0 + 48 * HOUR_MS)) == 48


@pytest.mark.parametrize("to", [T0, T0 - 1])
def test_hour_units_empty_range(to: int) -> None:
    with pytest.raises(ValueError, match="empty range: from 2019-02-04T00:00:00Z is not before to"):
        hour_units("s", "X", T0, to)


@given(st.integers(0, 10**13), st.integers(1, 200 * HOUR_MS))
def test_hour_units_property(from_ms: int, span: int) -> None:
    to_ms = from_ms + span
    units = hour_units("s", "X", from_ms, to_ms)
    assert units[0].start_ms <= from_ms < units[0].end_ms
    assert units[-1].start_ms < to_ms <= units[-1].end_ms
    assert all(u.start_ms % HOUR_MS == 0 for u in units)
    assert all(b.start_ms == a.end_ms for a, b in itertools.pairwise(units))
    assert len({u.key for u in units}) == len(units)


# --- Ticks ------------------------------------------------------------------------------------


def cols(n: int) -> dict[str, np.ndarray]:
    return {name: np.zeros(n, dtype=d) for name, d in TICK_COLUMNS}


def test_ticks_valid_and_len() -> None:
    t = Ticks(**cols(3))
    assert len(t) == 3
    assert len(Ticks.empty()) == 0
    assert [getattr(Ticks.empty(), n).dtype for n, _ in TICK_COLUMNS] == [
        np.dtype(d) for _, d in TICK_COLUMNS
    ]


def test_ticks_length_mismatch() -> None:
    c = cols(3)
    c["ask"] = np.zeros(2, dtype=np.int64)
    with pytest.raises(ValueError, match=r"tick column 'ask' has shape \(2,\), expected \(3,\)"):
        Ticks(**c)


def test_ticks_not_one_dimensional() -> None:
    c = cols(4)
    c["bid"] = np.zeros((2, 2), dtype=np.int64)
    with pytest.raises(ValueError, match=r"tick column 'bid' has shape \(2, 2\)"):
        Ticks(**c)


@pytest.mark.parametrize(
    ("name", "dtype"), [("ts_ms", np.int32), ("bid", np.float64), ("bid_volume", np.float32)]
)
def test_ticks_wrong_dtype(name: str, dtype: type) -> None:
    c = cols(2)
    c[name] = np.zeros(2, dtype=dtype)
    with pytest.raises(ValueError, match=f"tick column '{name}' has dtype .*, expected"):
        Ticks(**c)


def test_ticks_take_slice_mask_index() -> None:
    c = cols(5)
    c["ts_ms"] = np.arange(5, dtype=np.int64)
    c["bid_volume"] = np.arange(5, dtype=np.float64) / 2
    t = Ticks(**c)
    assert t.take(slice(1, 3)).ts_ms.tolist() == [1, 2]
    mask = np.array([True, False, True, False, True])
    taken = t.take(mask)
    assert taken.ts_ms.tolist() == [0, 2, 4]
    assert taken.bid_volume.tolist() == [0.0, 1.0, 2.0]
    assert t.take(np.array([4, 0], dtype=np.intp)).ts_ms.tolist() == [4, 0]
