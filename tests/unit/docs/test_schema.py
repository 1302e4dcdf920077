"""The published JSON Schemas (docs/schemas/) agree with the wire models they document.

Drift checks run always: property names are the models' wire names (aliases), required sets,
types and constraints match, and the schemas' own examples parse with the models. Validating
real ``to_json()`` output against the schemas needs ``jsonschema`` and is skipped without it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tickpipe_shared.sources import SOURCE_NAMES
from tickpipe_shared.wire.failures import Failure
from tickpipe_shared.wire.requests import FetchRequest, RequestError, parse_request

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS = ROOT / "docs" / "schemas"
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def load(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return schema


@pytest.fixture(scope="module")
def request_schema() -> dict[str, Any]:
    return load("fetch-request.schema.json")


@pytest.fixture(scope="module")
def failure_schema() -> dict[str, Any]:
    return load("failure.schema.json")


def wire_names(model: type[FetchRequest]) -> dict[str, str]:
    """Field name → name on the wire (the alias when there is one)."""
    return {name: f.alias or name for name, f in model.model_fields.items()}


def sample_requests() -> list[FetchRequest]:
    start = datetime(2019, 2, 4, tzinfo=UTC)
    return [
        FetchRequest.model_validate(
            {"instrument": "EURUSD", "from": start, "to": start + timedelta(days=2)}
        ),
        FetchRequest.model_validate(
            {
                "schema": 1,
                "request_id": "x" * 128,
                "source": "dukascopy-bi5",
                "instrument": "USA500.IDX/USD-x_1",
                "kind": "ticks",
                "from": "2019-02-04T00:30:00+01:00",
                "to": "2019-02-04T03:00:00Z",
                "requested_at": "2024-05-01T12:00:00Z",
            }
        ),
        # Field names work too (populate_by_name); the JSON still uses the aliases.
        FetchRequest(instrument="XAUUSD", from_=start, to=start + timedelta(hours=1)),
    ]


def sample_failures() -> list[Failure]:
    return [
        Failure(stage="writer", reason="boom", error_class="RuntimeError"),
        Failure(
            stage="fetcher",
            reason="gave up after 5 attempts; last error: 503 from http://u:secret@host/x",
            error_class="DownloadFailedError",
            key="dukascopy-bi5|EURUSD|ticks|2019-02-04T00:00:00Z",
            headers={"request_id": "r1", "url": "http://u:secret@host/x?token=abc"},
            topic="tickpipe.fetch-units",
            partition=3,
            offset=17,
            attempt=5,
            unit_key="dukascopy-bi5|EURUSD|ticks|2019-02-04T00:00:00Z",
            request_id="r1",
        ),
    ]


# --- fetch request -----------------------------------------------------------------------------


def test_schemas_declare_draft_2020_12(
    request_schema: dict[str, Any], failure_schema: dict[str, Any]
) -> None:
    for schema in (request_schema, failure_schema):
        assert schema["$schema"] == DRAFT
        assert schema["type"] == "object"
        assert schema["additionalProperties"] is False


def test_request_property_names_are_the_model_aliases(request_schema: dict[str, Any]) -> None:
    assert set(request_schema["properties"]) == set(wire_names(FetchRequest).values())
    # The aliases that matter to other systems really are what the JSON uses.
    assert {"from", "schema"} <= set(request_schema["properties"])
    assert not {"from_", "schema_version"} & set(request_schema["properties"])
    produced = json.loads(sample_requests()[0].to_json())
    assert set(produced) == set(request_schema["properties"])


def test_request_required_fields_match(request_schema: dict[str, Any]) -> None:
    required = {f.alias or name for name, f in FetchRequest.model_fields.items() if f.is_required()}
    assert set(request_schema["required"]) == required


def test_request_forbids_extra_fields_like_the_model(request_schema: dict[str, Any]) -> None:
    assert FetchRequest.model_config.get("extra") == "forbid"
    assert request_schema["additionalProperties"] is False


def test_request_constraints_match_pydantic(request_schema: dict[str, Any]) -> None:
    generated = FetchRequest.model_json_schema(by_alias=True)
    assert set(generated["properties"]) == set(request_schema["properties"])
    assert set(generated.get("required", [])) == set(request_schema["required"])
    keys = ("type", "enum", "const", "pattern", "minLength", "maxLength", "format")
    for name, prop in generated["properties"].items():
        ours = request_schema["properties"][name]
        for k in keys:
            assert ours.get(k) == prop.get(k), f"{name}.{k}: {ours.get(k)!r} != {prop.get(k)!r}"
        if "default" in prop:
            assert ours.get("default") == prop["default"], f"{name}.default"


def test_request_source_enum_is_sources(request_schema: dict[str, Any]) -> None:
    assert tuple(request_schema["properties"]["source"]["enum"]) == SOURCE_NAMES
    assert request_schema["properties"]["kind"]["enum"] == ["ticks", "candles"]
    assert request_schema["properties"]["schema"]["const"] == 1


def test_request_schema_examples_parse(request_schema: dict[str, Any]) -> None:
    for example in request_schema["examples"]:
        parsed = parse_request(json.dumps(example).encode())
        assert parsed.instrument == example["instrument"]


GOOD = {"instrument": "EURUSD", "from": "2019-02-04T00:00:00Z", "to": "2019-02-05T00:00:00Z"}
BAD_REQUESTS = [
    {**GOOD, "extra": 1},
    {**GOOD, "source": "nope"},
    {**GOOD, "kind": "candles"},
    {**GOOD, "timeframe": "1m"},
    {**GOOD, "kind": "candles", "timeframe": "1 minute"},
    {**GOOD, "source": "polygon", "instrument": "AAPL"},
    {**GOOD, "instrument": "EUR USD"},
    {**GOOD, "instrument": ""},
    {**GOOD, "request_id": "x" * 129},
    {**GOOD, "schema": 2},
    {k: v for k, v in GOOD.items() if k != "to"},
]


@pytest.mark.parametrize("bad", BAD_REQUESTS)
def test_schema_and_model_reject_the_same_records(
    request_schema: dict[str, Any], bad: dict[str, Any]
) -> None:
    with pytest.raises(RequestError):
        parse_request(json.dumps(bad).encode())
    jsonschema = pytest.importorskip("jsonschema")
    assert not jsonschema.Draft202012Validator(request_schema).is_valid(bad)


def test_request_json_validates_against_schema(request_schema: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(request_schema)
    validator = jsonschema.Draft202012Validator(
        request_schema, format_checker=jsonschema.FormatChecker()
    )
    for req in sample_requests():
        validator.validate(json.loads(req.to_json()))
    for example in request_schema["examples"]:
        validator.validate(example)


# --- failure -----------------------------------------------------------------------------------


_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", dict: "object", type(None): "null"}


def json_types(annotation: Any) -> set[str]:
    """``str | None`` → {"string", "null"}; ``dict[str, str]`` → {"object"}."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return set().union(*(json_types(a) for a in typing.get_args(annotation)))
    return {_JSON_TYPES[typing.get_origin(annotation) or annotation]}


def test_failure_property_names_are_the_dataclass_fields(failure_schema: dict[str, Any]) -> None:
    names = [f.name for f in dataclasses.fields(Failure)]
    assert set(failure_schema["properties"]) == set(names)
    produced = json.loads(sample_failures()[0].to_json())
    assert set(produced) == set(failure_schema["properties"])


def test_failure_required_and_types_match(failure_schema: dict[str, Any]) -> None:
    required = {
        f.name
        for f in dataclasses.fields(Failure)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    assert set(failure_schema["required"]) == required
    hints = typing.get_type_hints(Failure)
    for name, prop in failure_schema["properties"].items():
        declared = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        assert set(declared) == json_types(hints[name]), name
    for f in dataclasses.fields(Failure):
        if f.default is not dataclasses.MISSING:
            assert failure_schema["properties"][f.name].get("default") == f.default, f.name


def test_failure_schema_examples_parse(failure_schema: dict[str, Any]) -> None:
    for example in failure_schema["examples"]:
        parsed = Failure.from_json(json.dumps(example).encode())
        assert json.loads(parsed.to_json()) == example


def test_failure_json_validates_against_schema(failure_schema: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(failure_schema)
    validator = jsonschema.Draft202012Validator(failure_schema)
    for failure in sample_failures():
        validator.validate(json.loads(failure.to_json()))
    for example in failure_schema["examples"]:
        validator.validate(example)
    assert not validator.is_valid({"stage": "x", "reason": "y"})
    assert not validator.is_valid({"stage": "x", "reason": "y", "error_class": "E", "more": 1})


# --- topic pages -------------------------------------------------------------------------------

DOCS = ROOT / "docs"


def test_every_topic_has_a_page_in_the_index() -> None:
    from tickpipe_shared.kafka.topics import TOPICS

    index = (DOCS / "topics" / "README.md").read_text()
    pages = {p.stem for p in (DOCS / "topics").glob("*.md")} - {"README"}
    assert pages == {t.name for t in TOPICS}
    for t in TOPICS:
        assert f"({t.name}.md)" in index, t.name


def test_topic_configs_in_the_index_match_the_code() -> None:
    from tickpipe_shared.kafka.topics import TOPICS

    index = (DOCS / "topics" / "README.md").read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| ([a-z-]+) \| .*$", index, flags=re.M)}
    from tickpipe_shared.config import Settings
    from tickpipe_shared.kafka.topics import topic_configs

    for t in TOPICS:
        row = rows[t.name]
        configs = topic_configs(t, Settings())
        assert f"| {configs['retention.ms']} " in row, row
        size = configs.get("max.message.bytes")
        assert (size in row) if size else ("broker default" in row), row


def test_relative_links_in_docs_resolve() -> None:
    files = [
        *DOCS.glob("*.md"),
        *(DOCS / "topics").glob("*.md"),
        ROOT / "deploy" / "k8s" / "README.md",
    ]
    for md in files:
        for target in re.findall(r"\]\(([^)\s]+)\)", md.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = target.split("#", 1)[0]
            assert (md.parent / path).exists(), f"{md.relative_to(ROOT)}: broken link {target}"
