"""``tickpipe_shared.config``: settings from ``TICKPIPE_*`` environment variables."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError
from tickpipe_shared.config import Settings, get_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("TICKPIPE_"):
            monkeypatch.delenv(name)
    get_settings.cache_clear()


def test_defaults_match_local_stack() -> None:
    s = Settings()
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.database_url.get_secret_value() == (
        "postgresql://tickpipe:tickpipe@127.0.0.1:55432/tickpipe"
    )
    # Source URLs: the public endpoints (only the stand-in mode of the stack overrides them).
    assert s.dukascopy_json_url == "https://jetta.dukascopy.com/v1"
    assert s.dukascopy_bi5_url == "https://datafeed.dukascopy.com/datafeed"
    assert s.deriv_url == "wss://ws.derivws.com/websockets/v3" and s.deriv_app_id == "1089"
    assert s.polygon_url == "https://api.polygon.io" and s.polygon_api_key is None
    assert s.fetch_attempts == 5 and s.fetch_concurrency == 4
    assert s.max_batch_bytes == 900_000


def test_env_var_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKPIPE_KAFKA_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("TICKPIPE_DATABASE_URL", "postgresql://app:Sup3rS3cret@db:5432/ticks")
    monkeypatch.setenv("TICKPIPE_DUKASCOPY_JSON_URL", "https://json.test/v1")
    monkeypatch.setenv("TICKPIPE_DUKASCOPY_BI5_URL", "https://bi5.test/datafeed")
    monkeypatch.setenv("TICKPIPE_FETCH_CONCURRENCY", "9")
    monkeypatch.setenv("TICKPIPE_BI5_SCALE_OVERRIDES", '{"XAUUSD": 2}')
    monkeypatch.setenv("TICKPIPE_VALIDATOR_ACTIONS", '{"crossed_quote": "drop"}')
    s = Settings()
    assert s.kafka_bootstrap == "kafka-1:9092,kafka-2:9092"
    assert s.database_url.get_secret_value() == "postgresql://app:Sup3rS3cret@db:5432/ticks"
    assert s.dukascopy_json_url == "https://json.test/v1"
    assert s.dukascopy_bi5_url == "https://bi5.test/datafeed"
    assert s.fetch_concurrency == 9
    assert s.bi5_scale_overrides == {"XAUUSD": 2}
    assert s.validator_actions == {"crossed_quote": "drop"}


def test_lowercase_env_names_work_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("tickpipe_topic_prefix", "x.")
    assert Settings().topic("failures") == "x.failures"


def test_secret_never_in_repr_or_str_or_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKPIPE_DATABASE_URL", "postgresql://app:Sup3rS3cret@db:5432/ticks")
    s = Settings()
    for text in (repr(s), str(s), s.model_dump_json(), repr(s.model_dump())):
        assert "Sup3rS3cret" not in text
    assert "database_url" in repr(s)


def test_invalid_values_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKPIPE_FETCH_CONCURRENCY", "0")
    with pytest.raises(ValidationError, match="fetch_concurrency"):
        Settings()


def test_max_batch_bytes_lower_bound() -> None:
    with pytest.raises(ValidationError, match="max_batch_bytes"):
        Settings(max_batch_bytes=100)


def test_unknown_env_vars_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKPIPE_NOT_A_SETTING", "1")
    assert Settings().kafka_bootstrap == "127.0.0.1:9092"


def test_topic_group_and_port() -> None:
    s = Settings(topic_prefix="p.", consumer_group_prefix="g-")
    assert s.topic("raw-payloads") == "p.raw-payloads"
    assert s.group("decoder") == "g-decoder"
    assert s.port_for("fetcher") == 9101
    assert s.port_for("writer") == 9104
    assert s.port_for("unknown") == 9100
    assert Settings(metrics_port=7000).port_for("writer") == 7000


def test_get_settings_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKPIPE_KAFKA_BOOTSTRAP", "a:1")
    first = get_settings()
    monkeypatch.setenv("TICKPIPE_KAFKA_BOOTSTRAP", "b:2")
    assert get_settings() is first
    assert first.kafka_bootstrap == "a:1"
    get_settings.cache_clear()


def test_empty_env_var_keeps_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """compose and ConfigMaps write ``VAR: ""`` for "not set": the public endpoint stays."""
    monkeypatch.setenv("TICKPIPE_DUKASCOPY_JSON_URL", "")
    assert Settings().dukascopy_json_url == "https://jetta.dukascopy.com/v1"
