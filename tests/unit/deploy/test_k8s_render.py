"""Every Kustomize overlay renders (``kustomize build``) and passes ``kubeconform -strict``
against the Kubernetes and the KEDA CRD schemas, offline.

The tools and the raw schemas are installed by ``bin/bootstrap`` into ``.local/`` (Go module
proxy, PyPI); the schemas are converted into kubeconform's layout here
(:mod:`support.kubeconform`). Without them the tests skip on a developer machine and fail in CI
(``CI=true``): a CI run must never pass without having validated the manifests.
"""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.kubeconform import Verdict, crd_schemas, kubeconform, kubernetes_schemas

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
LOCAL = ROOT / ".local"
KUSTOMIZE = LOCAL / "go" / "bin" / "kustomize"
KUBECONFORM = LOCAL / "go" / "bin" / "kubeconform"
#: What bin/bootstrap fetches (keep the versions in step with it).
KUBERNETES_SCHEMAS = (
    LOCAL
    / "kubeconform"
    / "kubernetes-validate-1.37.0"
    / "kubernetes_validate"
    / "kubernetes-json-schema"
)
KEDA_CRDS = LOCAL / "kubeconform" / "keda-v2.18.3"
#: The oldest and the newest Kubernetes release the manifests are validated against.
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")
OVERLAYS = sorted(
    p.parent.relative_to(K8S).as_posix() for p in K8S.glob("overlays/*/kustomization.yaml")
)


def require(path: Path, what: str) -> None:
    """Skip without ``path`` on a developer machine; fail in CI."""
    if path.exists():
        return
    message = f"{what} missing ({path}): run bin/bootstrap"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@cache
def render(target: str) -> str:
    """``kustomize build deploy/k8s/<target>``."""
    require(KUSTOMIZE, "kustomize")
    result = subprocess.run(
        [str(KUSTOMIZE), "build", str(K8S / target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kustomize build {target}:\n{result.stderr}"
    return result.stdout


def resources(target: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render(target)) if d]


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kubeconform's schema tree: Kubernetes (every validated version) plus KEDA's CRDs."""
    require(KUBECONFORM, "kubeconform")
    require(KUBERNETES_SCHEMAS, "Kubernetes JSON schemas (PyPI kubernetes-validate)")
    require(KEDA_CRDS, "KEDA CRDs (Go module github.com/kedacore/keda/v2)")
    out = tmp_path_factory.mktemp("kubeconform-schemas")
    for version in KUBERNETES_VERSIONS:
        kubernetes_schemas(KUBERNETES_SCHEMAS, version, out)
    written = crd_schemas(sorted(KEDA_CRDS.glob("keda.sh_*.yaml")), out)
    assert {p.name for p in written} >= {
        "scaledobject_v1alpha1.json",
        "triggerauthentication_v1alpha1.json",
    }
    return out


def validate(schemas: Path, manifests: str, version: str) -> Verdict:
    return kubeconform(KUBECONFORM, schemas, manifests, version)


def test_overlays_found() -> None:
    assert OVERLAYS == ["overlays/dev", "overlays/production"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("target", ["base", *OVERLAYS])
def test_renders_and_passes_kubeconform_strict(target: str, version: str, schemas: Path) -> None:
    manifests = render(target)
    count = len(resources(target))
    verdict = validate(schemas, manifests, version)
    assert verdict.problems == [], "\n".join(verdict.problems)
    assert verdict.returncode == 0
    # Every resource was checked against a schema: none invalid, none without a schema.
    assert verdict.summary == {"valid": count, "invalid": 0, "errors": 0, "skipped": 0}
    kinds = {d["kind"] for d in resources(target)}
    assert {"ScaledObject", "Deployment", "NetworkPolicy", "PodDisruptionBudget"} <= kinds


def _with(target: str, kind: str, change: Any) -> str:
    docs = resources(target)
    (doc,) = [d for d in docs if d["kind"] == kind][:1]
    change(doc)
    return yaml.safe_dump_all(docs)


def test_strict_rejects_an_unknown_field_of_a_deployment(schemas: Path) -> None:
    def typo(d: dict[str, Any]) -> None:
        d["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}

    verdict = validate(schemas, _with("base", "Deployment", typo), KUBERNETES_VERSIONS[-1])
    assert verdict.returncode != 0
    assert verdict.summary["invalid"] == 1
    assert any("readinesProbe" in p for p in verdict.problems), verdict.problems


def test_strict_rejects_an_unknown_field_of_a_scaled_object(schemas: Path) -> None:
    """The KEDA CRD schema is used and closed: a misspelt field is an error, not ignored."""

    def typo(d: dict[str, Any]) -> None:
        d["spec"]["maxReplicas"] = d["spec"].pop("maxReplicaCount")

    verdict = validate(schemas, _with("base", "ScaledObject", typo), KUBERNETES_VERSIONS[-1])
    assert verdict.returncode != 0
    assert verdict.summary["invalid"] == 1
    assert any("maxReplicas" in p for p in verdict.problems), verdict.problems


def test_a_kind_without_schema_is_an_error_not_skipped(schemas: Path) -> None:
    unknown = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"
    verdict = validate(schemas, unknown, KUBERNETES_VERSIONS[-1])
    assert verdict.returncode != 0
    assert verdict.summary["errors"] == 1 and verdict.summary["skipped"] == 0
