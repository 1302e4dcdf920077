"""The configuration file ``tickpipe.yaml``: one nested section per service and source, mapped
onto the flat settings fields (``fetcher: {concurrency: 4}`` is ``Settings.fetch_concurrency``,
environment variable ``TICKPIPE_FETCH_CONCURRENCY``).

The file is named by ``TICKPIPE_CONFIG`` (the CLI's ``--config`` sets it); without it there is no
file. It is read through pydantic-settings' :class:`~pydantic_settings.YamlConfigSettingsSource`
and sits between the environment and the defaults: environment > file > defaults.

Where a field lives in the file is derived from its name (:func:`file_key`): the field's
``json_schema_extra={"file_key": "section.key"}`` when it has one, else :data:`EXPLICIT_KEYS`,
else the first matching prefix of :data:`SECTION_PREFIXES` (stripped), else section
``process``. A settings class whose fields all belong to one section (the API's) declares it as
class attribute ``FILE_SECTION``. ``docs/configuration.md`` holds :func:`mapping_markdown`'s
table (a test keeps it current).

Unknown sections and keys are errors (:class:`ConfigFileError`) naming the key, the file and the
closest valid key; so is a file that is not a mapping of sections.
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    YamlConfigSettingsSource,
)

#: Environment variable naming the configuration file.
CONFIG_ENV = "TICKPIPE_CONFIG"

#: Field-name prefix → file section; the prefix is stripped from the key. First match wins.
SECTION_PREFIXES: tuple[tuple[str, str], ...] = (
    ("kafka_", "kafka"),
    ("database_", "database"),
    ("topic_", "topics"),
    ("dukascopy_json_", "dukascopy_json"),
    ("dukascopy_bi5_", "dukascopy_bi5"),
    ("bi5_", "dukascopy_bi5"),
    ("deriv_", "deriv"),
    ("polygon_", "polygon"),
    ("instrument_", "instruments"),
    ("fetch_", "fetcher"),
    ("decoder_", "decoder"),
    ("validator_", "validator"),
    ("writer_", "writer"),
    ("tracker_", "tracker"),
    ("metrics_", "metrics"),
)

#: Fields whose name carries no section prefix: field → (section, key).
EXPLICIT_KEYS: dict[str, tuple[str, str]] = {
    "http_proxy": ("fetcher", "http_proxy"),
    "http_proxy_by_source": ("fetcher", "http_proxy_by_source"),
    "max_batch_bytes": ("decoder", "max_batch_bytes"),
    "default_source": ("cli", "default_source"),
    "consumer_group_prefix": ("kafka", "consumer_group_prefix"),
}

#: Section of the fields that match nothing above.
FALLBACK_SECTION = "process"

#: Sections owned by settings classes outside ``tickpipe_shared`` (imported lazily, when
#: installed, to validate their keys): section → ``module:Class``.
FOREIGN_SECTIONS: dict[str, str] = {"api": "tickpipe_api.settings:ApiSettings"}


class ConfigFileError(ValueError):
    """The configuration file is unreadable, not a mapping of sections, or has an unknown
    section or key (the message names it, the file, and the closest valid key)."""


@dataclass(frozen=True, slots=True)
class FileKey:
    """Where a settings field lives in the file: ``section.key``."""

    section: str
    key: str

    def __str__(self) -> str:
        return f"{self.section}.{self.key}"


def file_key(name: str, field: FieldInfo, section: str | None = None) -> FileKey:
    """The file key of settings field ``name`` (see the module docstring for the rule);
    ``section``: the class's own ``file_section``, which puts every field there by name."""
    extra = field.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("file_key"), str):
        sect, _, key = str(extra["file_key"]).partition(".")
        return FileKey(sect, key)
    if section is not None:
        return FileKey(section, name)
    if name in EXPLICIT_KEYS:
        return FileKey(*EXPLICIT_KEYS[name])
    for prefix, sect in SECTION_PREFIXES:
        if name.startswith(prefix):
            return FileKey(sect, name[len(prefix) :])
    return FileKey(FALLBACK_SECTION, name)


def layout(settings_cls: type[BaseSettings]) -> dict[str, FileKey]:
    """Field name → its :class:`FileKey`, for every field of ``settings_cls``."""
    own = getattr(settings_cls, "FILE_SECTION", None)
    section = own if isinstance(own, str) else None
    return {name: file_key(name, f, section) for name, f in settings_cls.model_fields.items()}


def config_path() -> Path | None:
    """The file ``TICKPIPE_CONFIG`` names, or ``None`` when it is unset or empty."""
    value = os.environ.get(CONFIG_ENV, "").strip()
    return Path(value) if value else None


def read_sections(path: Path, settings_cls: type[BaseSettings]) -> dict[str, Any]:
    """The file's top level: section → mapping of keys (through pydantic-settings' YAML source).

    Raises :class:`ConfigFileError` when the file is missing, not YAML, or not a mapping of
    mappings.
    """
    if not path.is_file():
        raise ConfigFileError(f"{path}: configuration file not found ({CONFIG_ENV})")
    try:
        data = YamlConfigSettingsSource(settings_cls, yaml_file=path).yaml_data
    except Exception as e:  # yaml.YAMLError, OSError, and a top level that is no mapping
        if isinstance(e, ValueError | TypeError):
            data = None
        else:
            raise ConfigFileError(f"{path}: not readable as YAML: {e}") from None
    if not isinstance(data, Mapping):
        raise ConfigFileError(f"{path}: the top level must be a mapping of sections")
    for section, keys in data.items():
        if keys is not None and not isinstance(keys, Mapping):
            raise ConfigFileError(
                f"{path}: section {section!r} must be a mapping of keys, not {type(keys).__name__}"
            )
    return {str(k): dict(v or {}) for k, v in data.items()}


def _closest(word: str, choices: Iterable[str]) -> str:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"; did you mean {found[0]!r}?" if found else ""


def all_sections() -> set[str]:
    """Every valid section name: the shared settings' and the foreign ones."""
    from tickpipe_shared.config import Settings

    return {k.section for k in layout(Settings).values()} | set(FOREIGN_SECTIONS)


def flatten(
    sections: Mapping[str, Mapping[str, Any]],
    settings_cls: type[BaseSettings],
    path: Path,
    *,
    check_foreign: bool = True,
) -> dict[str, Any]:
    """The values of ``settings_cls``'s fields found in the file's ``sections``, by field name.

    Sections belonging to another settings class are skipped (and checked by that class when it
    is installed and ``check_foreign``). Raises :class:`ConfigFileError` for an unknown section
    or key, naming it, ``path`` and the closest valid one.
    """
    by_key = {(k.section, k.key): name for name, k in layout(settings_cls).items()}
    mine = {section for section, _ in by_key}
    valid = all_sections() | mine
    values: dict[str, Any] = {}
    for section, keys in sections.items():
        if section not in valid:
            raise ConfigFileError(
                f"{path}: unknown section {section!r}{_closest(section, valid)} "
                f"(valid: {', '.join(sorted(valid))})"
            )
        if section not in mine:
            if check_foreign:
                foreign = foreign_settings(section)
                if foreign is not None:
                    flatten({section: keys}, foreign, path, check_foreign=False)
            continue
        known = [key for s, key in by_key if s == section]
        for key, value in keys.items():
            name = by_key.get((section, str(key)))
            if name is None:
                hint = _closest(str(key), known)
                hint = hint.replace("'", f"'{section}.", 1) if hint else ""
                raise ConfigFileError(f"{path}: unknown key '{section}.{key}'{hint}")
            values[name] = value
    return values


def foreign_settings(section: str) -> type[BaseSettings] | None:
    """The settings class owning foreign ``section``, or ``None`` when it is not installed."""
    target = FOREIGN_SECTIONS.get(section)
    if target is None:
        return None
    module, _, name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except ImportError:
        return None
    return cls if isinstance(cls, type) and issubclass(cls, BaseSettings) else None


class SectionedYamlSource(PydanticBaseSettingsSource):
    """Settings source of the ``TICKPIPE_CONFIG`` file: its sections mapped onto the flat
    fields of ``settings_cls`` (nothing when no file is configured).

    Raises :class:`ConfigFileError` (at settings construction) for a missing file or an
    unknown section or key."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None = None) -> None:
        super().__init__(settings_cls)
        self.path = path if path is not None else config_path()
        self._values: dict[str, Any] | None = None

    def values(self) -> dict[str, Any]:
        """Field name → value found in the file."""
        if self._values is None:
            if self.path is None:
                self._values = {}
            else:
                sections = read_sections(self.path, self.settings_cls)
                self._values = flatten(sections, self.settings_cls, self.path)
        return self._values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """The file's value of ``field_name`` (pydantic-settings' per-field hook)."""
        return self.values().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values())


def origins(settings_cls: type[BaseSettings]) -> dict[str, str]:
    """Field name → where its effective value comes from: ``env``, ``file`` or ``default``
    (environment > file > defaults, as the settings classes read them)."""
    env = EnvSettingsSource(settings_cls)()
    file = SectionedYamlSource(settings_cls).values()
    return {
        name: "env" if name in env else "file" if name in file else "default"
        for name in settings_cls.model_fields
    }


def env_name(settings_cls: type[BaseSettings], name: str) -> str:
    """The environment variable of field ``name``: ``TICKPIPE_FETCH_CONCURRENCY``."""
    prefix = str(settings_cls.model_config.get("env_prefix") or "")
    return f"{prefix}{name}".upper()


def mapping_markdown(classes: Iterable[type[BaseSettings]]) -> str:
    """The documented table: file key, environment variable, settings field, per field."""
    lines = ["| file key | environment variable | settings field |", "| --- | --- | --- |"]
    for cls in classes:
        for name, key in layout(cls).items():
            lines.append(f"| `{key}` | `{env_name(cls, name)}` | `{cls.__name__}.{name}` |")
    return "\n".join(lines)


def example_yaml(classes: Iterable[type[BaseSettings]]) -> str:
    """A commented configuration file covering every field of ``classes``: every section, and
    each key commented out with its default and description (secrets without a value)."""
    from pydantic import SecretStr

    sections: dict[str, list[str]] = {}
    for cls in classes:
        for name, key in layout(cls).items():
            field = cls.model_fields[name]
            lines = sections.setdefault(key.section, [])
            about = " ".join((field.description or name.replace("_", " ")).split())
            lines.append(f"  # {about} [{env_name(cls, name)}]")
            default = field.get_default(call_default_factory=True)
            secret = isinstance(default, SecretStr) or "SecretStr" in str(field.annotation)
            value = "<secret: prefer the environment>" if secret else json.dumps(default)
            lines.append(f"  # {key.key}: {value}")
    out = [
        "# tickpipe configuration file (docs/configuration.md). Point TICKPIPE_CONFIG (or the",
        "# CLI's --config) at it. Environment variables win over it; what it leaves out keeps its",
        "# default. Every setting is listed, commented out, with its default: uncomment to change.",
        "# Generated by `tickpipe config example`.",
    ]
    for section, lines in sections.items():
        out += ["", f"{section}:", *lines]
    return "\n".join(out) + "\n"
