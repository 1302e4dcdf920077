"""``tickpipe_shared.config_file``: the YAML file's sections on the flat settings, precedence
environment > file > defaults, unknown keys, and ``tickpipe config show|check|example``."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from tickpipe_api.settings import ApiSettings
from tickpipe_cli import main as cli_main
from tickpipe_shared.config import Settings, get_settings
from tickpipe_shared.config_file import (
    CONFIG_ENV,
    ConfigFileError,
    example_yaml,
    layout,
    mapping_markdown,
    origins,
)
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith("TICKPIPE_"):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tickpipe.yaml"
    path.write_text(text)
    return path


def test_layout_follows_field_name_prefixes() -> None:
    keys = {name: str(key) for name, key in layout(Settings).items()}
    assert keys["fetch_concurrency"] == "fetcher.concurrency"
    assert keys["kafka_bootstrap"] == "kafka.bootstrap"
    assert keys["database_url"] == "database.url"
    assert keys["dukascopy_json_url"] == "dukascopy_json.url"
    assert keys["bi5_scale_overrides"] == "dukascopy_bi5.scale_overrides"
    assert keys["http_proxy"] == "fetcher.http_proxy"
    assert keys["validator_actions"] == "validator.actions"
    assert keys["log_level"] == "process.log_level"
    assert str(layout(ApiSettings)["port"]) == "api.port"
    assert len(set(keys.values())) == len(keys)  # one key per field


def test_precedence_env_over_file_over_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "fetcher:\n  concurrency: 7\n  attempts: 2\nkafka:\n  bootstrap: file:9092\n"
    path = write(tmp_path, text + "api:\n  port: 9000\n  auth: 'off'\n")
    monkeypatch.setenv(CONFIG_ENV, str(path))
    monkeypatch.setenv("TICKPIPE_FETCH_ATTEMPTS", "9")
    monkeypatch.setenv("TICKPIPE_API_AUTH", "on")
    s = get_settings()  # what every service calls
    assert (s.fetch_concurrency, s.fetch_attempts, s.kafka_bootstrap) == (7, 9, "file:9092")
    assert s.writer_batch_rows == 100_000  # default
    api = ApiSettings()
    assert (api.port, api.auth) == (9000, "on")
    where = origins(Settings)
    assert (where["fetch_concurrency"], where["fetch_attempts"], where["log_level"]) == (
        "file", "env", "default",
    )  # fmt: skip


def test_without_a_file_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, "")
    assert Settings().fetch_concurrency == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fetcher:\n  concurency: 3\n",
         r"unknown key 'fetcher.concurency'; did you mean 'fetcher.concurrency'\?"),
        ("fetchr:\n  concurrency: 3\n", r"unknown section 'fetchr'; did you mean 'fetcher'\?"),
        ("api:\n  prot: 1\n", r"unknown key 'api.prot'; did you mean 'api.port'\?"),
        ("- a\n- b\n", "the top level must be a mapping of sections"),
        ("fetcher: 3\n", "section 'fetcher' must be a mapping of keys"),
        ("fetcher: [\n", "not readable as YAML"),
    ],
)  # fmt: skip
def test_bad_files_name_the_key_and_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    monkeypatch.setenv(CONFIG_ENV, str(path))
    with pytest.raises(ConfigFileError, match=message) as info:
        Settings()
    assert str(info.value).startswith(f"{path}: ")


def test_missing_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigFileError, match="configuration file not found"):
        Settings()


def test_invalid_value_from_the_file_names_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(write(tmp_path, "fetcher:\n  concurrency: 0\n")))
    with pytest.raises(ValidationError, match="fetch_concurrency"):
        Settings()


# --- the CLI ----------------------------------------------------------------------------------


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli_main.app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_show_masks_secrets_and_says_origins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "database:\n  url: postgresql://app:FileS3cret@db/t\n"
                           "fetcher:\n  concurrency: 3\n")  # fmt: skip
    monkeypatch.setenv("TICKPIPE_POLYGON_API_KEY", "EnvS3cret")
    monkeypatch.setenv("TICKPIPE_WRITER_BATCH_ROWS", "5")
    code, out, _ = cli("--config", str(path), "config", "show", "--json")
    assert code == 0
    assert "S3cret" not in out
    rows = {r["key"]: r for r in json.loads(out)}
    assert rows["database.url"] == {"key": "database.url", "env": "TICKPIPE_DATABASE_URL",
                                    "value": "********", "origin": "file"}  # fmt: skip
    assert (rows["polygon.api_key"]["value"], rows["polygon.api_key"]["origin"]) == (
        "********", "env",
    )  # fmt: skip
    assert (rows["fetcher.concurrency"]["value"], rows["fetcher.concurrency"]["origin"]) == (
        3, "file",
    )  # fmt: skip
    assert rows["writer.batch_rows"]["origin"] == "env"
    assert rows["api.port"] == {"key": "api.port", "env": "TICKPIPE_API_PORT", "value": 8000,
                                "origin": "default"}  # fmt: skip
    code, out, _ = cli("--config", str(path), "config", "show")
    assert code == 0 and "S3cret" not in out and "fetcher.concurrency" in out


def test_check_validates_without_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKPIPE_FETCH_CONCURRENCY", "0")  # ignored: the file alone is checked
    good = write(tmp_path, "fetcher:\n  concurrency: 2\napi:\n  port: 8080\n")
    code, out, _ = cli("config", "check", str(good))
    assert (code, out.strip()) == (0, f"{good}: valid (2 settings set)")
    bad = write(tmp_path, "fetcher:\n  concurrency: 0\napi:\n  port: 99999\n")
    code, _, errors = cli("config", "check", str(bad))
    assert code == 2
    assert errors.splitlines() == [
        f"{bad}: fetcher.concurrency (TICKPIPE_FETCH_CONCURRENCY): Input should be greater "
        "than or equal to 1",
        f"{bad}: api.port (TICKPIPE_API_PORT): Input should be less than or equal to 65535",
    ]
    typo = write(tmp_path, "writer:\n  batch_row: 1\n")
    code, _, errors = cli("config", "check", str(typo))
    assert code == 2 and "did you mean 'writer.batch_rows'?" in errors


def test_example_file_is_current_and_covers_every_setting(tmp_path: Path) -> None:
    committed = (ROOT / "tickpipe.example.yaml").read_text()
    assert committed == example_yaml([Settings, ApiSettings]), "run: tickpipe config example"
    code, out, _ = cli("config", "check", str(ROOT / "tickpipe.example.yaml"))
    assert code == 0
    # Uncommenting every key (secrets aside) gives a valid file setting every field to its
    # default.
    text = re.sub(r"^  # (\w+): (?!<secret)", r"  \1: ", committed, flags=re.M)
    path = write(tmp_path, text)
    code, out, _ = cli("config", "check", str(path))
    secrets = committed.count("<secret")
    total = len(Settings.model_fields) + len(ApiSettings.model_fields)
    assert (code, out.strip()) == (0, f"{path}: valid ({total - secrets} settings set)")


def test_docs_show_the_current_key_table() -> None:
    docs = (ROOT / "docs" / "configuration.md").read_text()
    assert mapping_markdown([Settings, ApiSettings]) in docs
