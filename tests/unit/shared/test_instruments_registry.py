"""``tickpipe_shared.instruments.registry``: names, lookups and price scales."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from tickpipe_shared.instruments import (
    Instrument,
    InstrumentRegistry,
    UnknownInstrumentError,
    canonical_name,
)
from tickpipe_shared.instruments.registry import BI5_SCALE_EXCEPTIONS

RESPONSE: dict[str, Any] = {
    "instruments": [
        {
            "name": "EUR/USD",
            "code": "EUR-USD",
            "description": "Euro vs US Dollar",
            "pipValue": 0.0001,
            "priceScale": 5,
        },
        {"name": "USD/JPY", "code": "USD-JPY", "pipValue": 0.01, "priceScale": 3},
        {"name": "USA500.IDX/USD", "code": "USA500.IDX-USD", "pipValue": 1, "priceScale": 3},
        {"name": "XAU/USD", "code": "XAU-USD", "pipValue": 0.01, "priceScale": 3},
        {"name": "BTC/USD", "code": "BTC-USD", "pipValue": 1, "priceScale": 1},
        # pipValue says 3, the legacy datafeed used 5: a built-in exception.
        {"name": "AED/HUF", "code": "AED-HUF", "pipValue": 0.01, "priceScale": 3},
        # No priceScale: derived from pipValue.
        {"name": "PIP/ONLY", "code": "PIP-ONLY", "pipValue": 0.001, "priceScale": None},
        # No pipValue: bi5 scale falls back to priceScale.
        {"name": "SCALE/ONLY", "code": "SCALE-ONLY", "pipValue": None, "priceScale": 2},
        # Unusable entries: skipped.
        {"name": "NO/SCALE", "code": "NO-SCALE", "pipValue": None, "priceScale": None},
        {"name": "ZERO/PIP", "code": "ZERO-PIP", "pipValue": 0},
        {"name": "no code"},
        {"name": "numeric code", "code": 12, "priceScale": 2},
    ]
}


@pytest.fixture
def registry() -> InstrumentRegistry:
    return InstrumentRegistry.from_instruments_response(RESPONSE)


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("EUR-USD", "EURUSD"),
        ("eur/usd", "EURUSD"),
        ("USA500.IDX-USD", "USA500IDXUSD"),
        ("0005.HK-HKD", "0005HKHKD"),
        ("btc_usd ", "BTCUSD"),
    ],
)
def test_canonical_name(code: str, name: str) -> None:
    assert canonical_name(code) == name


def test_canonical_names_and_fields(registry: InstrumentRegistry) -> None:
    eur = registry.get("EURUSD")
    assert eur == Instrument(
        name="EURUSD",
        json_code="EUR-USD",
        bi5_symbol="EURUSD",
        price_scale=5,
        bi5_scale=5,
        pip_value=0.0001,
        description="Euro vs US Dollar",
    )
    idx = registry.get("USA500IDXUSD")
    assert (idx.json_code, idx.bi5_symbol) == ("USA500.IDX-USD", "USA500IDXUSD")


def test_entries_without_scale_are_skipped(registry: InstrumentRegistry) -> None:
    assert len(registry) == 8
    for name in ("NOSCALE", "ZEROPIP", "nocode"):
        assert name not in registry


@pytest.mark.parametrize("spelling", ["EURUSD", "EUR-USD", "eur/usd", "Eur_Usd", "eurusd"])
def test_lookup_by_any_spelling(registry: InstrumentRegistry, spelling: str) -> None:
    assert registry.get(spelling).name == "EURUSD"
    assert spelling in registry


def test_contains_non_string(registry: InstrumentRegistry) -> None:
    assert 5 not in registry
    assert None not in registry


def test_unknown_with_close_match(registry: InstrumentRegistry) -> None:
    with pytest.raises(UnknownInstrumentError) as info:
        registry.get("EURUSX")
    msg = str(info.value)
    assert msg.startswith("unknown instrument 'EURUSX': not among the 8 instruments")
    assert msg.endswith("; did you mean EURUSD?")


def test_unknown_without_close_match(registry: InstrumentRegistry) -> None:
    with pytest.raises(UnknownInstrumentError) as info:
        registry.get("QQQQQQQQ")
    assert "did you mean" not in str(info.value)
    assert "'QQQQQQQQ'" in str(info.value)
    assert isinstance(info.value, LookupError)


@pytest.mark.parametrize(
    ("name", "price_scale", "bi5_scale"),
    [
        ("EURUSD", 5, 5),  # 10 / 0.0001 = 10^5
        ("USDJPY", 3, 3),  # 10 / 0.01 = 10^3
        ("BTCUSD", 1, 1),  # 10 / 1 = 10^1
        ("USA500IDXUSD", 3, 1),  # JSON scale 3, legacy 10 / pip 1 → 1
        ("AEDHUF", 3, 5),  # built-in exception
        ("PIPONLY", 4, 4),  # derived for both
        ("SCALEONLY", 2, 2),  # no pipValue: bi5 falls back to priceScale
    ],
)
def test_bi5_scale_from_pip_value(
    registry: InstrumentRegistry, name: str, price_scale: int, bi5_scale: int
) -> None:
    inst = registry.get(name)
    assert inst.price_scale == price_scale
    assert inst.bi5_scale == bi5_scale
    assert inst.scale_for("dukascopy-json") == price_scale
    assert inst.scale_for("dukascopy-bi5") == bi5_scale


def test_builtin_exceptions() -> None:
    assert dict(BI5_SCALE_EXCEPTIONS) == {"AEDHUF": 5, "AUDCNH": 6, "EURTHB": 3}


def test_overrides_win_in_any_spelling() -> None:
    reg = InstrumentRegistry.from_instruments_response(
        RESPONSE, {"xau/usd": 2, "AED-HUF": 4, "UNLISTED": 9}
    )
    assert reg.get("XAUUSD").bi5_scale == 2
    assert reg.get("XAUUSD").price_scale == 3  # JSON scale untouched
    assert reg.get("AEDHUF").bi5_scale == 4  # operator beats built-in exception
    assert "UNLISTED" not in reg


def test_pip_value_none_for_missing_pip(registry: InstrumentRegistry) -> None:
    assert registry.get("SCALEONLY").pip_value is None
    assert registry.get("BTCUSD").pip_value == 1.0


@pytest.mark.parametrize("data", [{}, {"instruments": None}, {"instruments": {"a": 1}}])
def test_response_without_instruments_list(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="no 'instruments' list"):
        InstrumentRegistry.from_instruments_response(data)


# --- the recorded metadata beside the repo ------------------------------------------------------

RAW_META = "data/dukascopy/meta/raw-meta-data-2026-07-13.json"
LEGACY_META = "data/dukascopy/meta/legacy/instrument-meta-data.json"


@pytest.fixture(scope="module")
def real(shared_dir: Path) -> tuple[InstrumentRegistry, dict[str, Any]]:
    path = shared_dir / RAW_META
    if not path.exists():
        pytest.skip(f"{path} not found")
    data = json.loads(path.read_text())
    return InstrumentRegistry.from_instruments_response(data), data


@pytest.mark.parametrize(
    ("name", "scale"), [("EURUSD", 5), ("XAUUSD", 3), ("USDJPY", 3), ("BTCUSD", 1)]
)
def test_real_metadata_scales(
    real: tuple[InstrumentRegistry, dict[str, Any]], name: str, scale: int
) -> None:
    registry, _ = real
    inst = registry.get(name)
    assert inst.price_scale == scale
    assert inst.bi5_scale == scale


def test_real_metadata_every_instrument_listed(
    real: tuple[InstrumentRegistry, dict[str, Any]],
) -> None:
    registry, data = real
    usable = [
        i for i in data["instruments"] if i.get("priceScale") is not None or i.get("pipValue")
    ]
    assert len(registry) == len(usable) > 1000


def test_real_bi5_scale_matches_legacy_decimal_factor(
    real: tuple[InstrumentRegistry, dict[str, Any]], shared_dir: Path
) -> None:
    registry, data = real
    legacy_path = shared_dir / LEGACY_META
    if not legacy_path.exists():
        pytest.skip(f"{legacy_path} not found")
    legacy = {v["name"]: v for v in json.loads(legacy_path.read_text()).values()}
    checked, wrong = 0, []
    for item in data["instruments"]:
        old = legacy.get(item["name"])
        if old is None or item["code"] not in registry:
            continue
        checked += 1
        expected = round(math.log10(old["decimalFactor"]))
        got = registry.get(item["code"]).bi5_scale
        if got != expected:
            wrong.append((item["name"], got, expected))
    assert checked > 1000
    assert wrong == []
