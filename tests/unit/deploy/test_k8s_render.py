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
from support.deploy import SECRET_SETTINGS, setting_env_names
from support.kubeconform import Verdict, crd_schemas, kubeconform, kubernetes_schemas
from tickpipe_shared.config import Settings

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
#: bin/bootstrap's install folder (TICKPIPE_LOCAL_DIR, relative to the repository root).
LOCAL = ROOT / os.environ.get("TICKPIPE_LOCAL_DIR", ".local")
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


# --- what the overlays change ------------------------------------------------------------------


#: Kafka client security settings the kafka-sasl-ssl component sets (TLS/SASL work of issue 12).
#: A ConfigMap key must be a Settings field; these are tolerated by name until Settings has
#: them (then this set only documents what the production overlay must set).
def file_setting_names() -> set[str]:
    """``TICKPIPE_<FIELD>_FILE`` of every secret setting (read from a mounted file)."""
    return {f"{n}_FILE" for n in setting_env_names() if n in SECRET_SETTINGS}


def of_kind(target: str, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in resources(target) if d["kind"] == kind}


def pod_containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


@pytest.mark.parametrize("target", OVERLAYS)
def test_overlay_settings_and_replica_ceiling(
    target: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (cm,) = of_kind(target, "ConfigMap").values()
    data: dict[str, str] = cm["data"]
    names = setting_env_names()
    unknown = set(data) - names
    assert unknown <= file_setting_names(), sorted(unknown - file_setting_names())
    assert not set(data) & SECRET_SETTINGS
    # The ConfigMap is a valid configuration as the pod sees it: every path it names (mounted
    # secrets, CA files) is stood in for by a file here.
    for key, value in data.items():
        if value.startswith("/etc/tickpipe/"):
            stand_in = tmp_path / value.strip("/").replace("/", "_")
            stand_in.write_text("secret-from-a-mounted-file\n")
            value = str(stand_in)
        monkeypatch.setenv(key, value)
    settings = Settings()
    partitions = settings.topic_partitions
    scaled = of_kind(target, "ScaledObject")
    assert len(scaled) == 4
    for so in scaled.values():
        assert so["spec"]["maxReplicaCount"] == partitions, "partitions are the replica ceiling"
    assert settings.fetch_replicas == scaled["tickpipe-fetcher"]["spec"]["maxReplicaCount"]
    hpa = of_kind(target, "HorizontalPodAutoscaler")["tickpipe-api"]["spec"]
    assert int(data["TICKPIPE_API_REPLICAS"]) == hpa["minReplicas"]


def test_dev_is_small() -> None:
    (cm,) = of_kind("overlays/dev", "ConfigMap").values()
    assert cm["data"]["TICKPIPE_TOPIC_REPLICATION"] == "1"
    for dep in of_kind("overlays/dev", "Deployment").values():
        (c,) = pod_containers(dep)
        assert c["resources"]["requests"]["cpu"] == "50m", dep["metadata"]["name"]


def test_production_pins_images_and_scales_wider_than_base() -> None:
    base = of_kind("base", "ScaledObject")
    prod = of_kind("overlays/production", "ScaledObject")
    for name, so in prod.items():
        assert so["spec"]["maxReplicaCount"] > base[name]["spec"]["maxReplicaCount"]
        assert so["spec"]["minReplicaCount"] >= 2, "a node drain must not pause a stage"
    prod_hpa = of_kind("overlays/production", "HorizontalPodAutoscaler")["tickpipe-api"]
    assert (
        prod_hpa["spec"]["maxReplicas"]
        > of_kind("base", "HorizontalPodAutoscaler")["tickpipe-api"]["spec"]["maxReplicas"]
    )
    base_deps = of_kind("base", "Deployment")
    bigger = 0
    for name, dep in of_kind("overlays/production", "Deployment").items():
        for c in pod_containers(dep):
            image, _, tag = c["image"].rpartition(":")
            assert "/" in image and image.split("/")[0].count(".") >= 1, "a registry"
            assert tag and tag != "latest" and tag[0].isdigit(), c["image"]
            (base_c,) = pod_containers(base_deps[name])
            bigger += c["resources"]["limits"] != base_c["resources"]["limits"]
    assert bigger >= 4


def test_production_kafka_is_sasl_ssl_everywhere() -> None:
    target = "overlays/production"
    (cm,) = of_kind(target, "ConfigMap").values()
    data = cm["data"]
    assert {
        "TICKPIPE_KAFKA_SECURITY_PROTOCOL",
        "TICKPIPE_KAFKA_SASL_MECHANISM",
        "TICKPIPE_KAFKA_SASL_USERNAME",
        "TICKPIPE_KAFKA_SASL_PASSWORD_FILE",
        "TICKPIPE_KAFKA_SSL_CAFILE",
    } <= set(data)
    assert data["TICKPIPE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert data["TICKPIPE_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert data["TICKPIPE_KAFKA_BOOTSTRAP"].endswith("-kafka-bootstrap.kafka.svc:9093")  # Strimzi
    files = {data["TICKPIPE_KAFKA_SASL_PASSWORD_FILE"], data["TICKPIPE_KAFKA_SSL_CAFILE"]}
    workloads = [*of_kind(target, "Deployment").values(), *of_kind(target, "Job").values()]
    for w in workloads:
        volumes = {v["name"]: v for v in w["spec"]["template"]["spec"]["volumes"]}
        secrets = {s["secret"]["name"] for s in volumes["kafka"]["projected"]["sources"]}
        assert secrets == {"tickpipe-kafka-user", "tickpipe-kafka-ca"}
        for c in pod_containers(w):
            mounts = {m["mountPath"]: m for m in c["volumeMounts"] if m["name"] == "kafka"}
            for f in files:
                folder = f.rsplit("/", 1)[0]
                assert mounts[folder]["readOnly"] is True, (w["metadata"]["name"], c["name"])
    auth = of_kind(target, "TriggerAuthentication")
    for so in of_kind(target, "ScaledObject").values():
        for t in so["spec"]["triggers"]:
            assert t["metadata"]["sasl"] == "scram_sha512" and t["metadata"]["tls"] == "enable"
            assert t["authenticationRef"]["name"] in auth
    (ta,) = auth.values()
    params = {r["parameter"] for r in ta["spec"]["secretTargetRef"]} | {
        e["parameter"] for e in ta["spec"]["env"]
    }
    assert params == {"username", "password", "ca"}
    # The database is reached over TLS only from its own range, the API only via the ingress.
    policies = of_kind(target, "NetworkPolicy")
    (db_rule,) = policies["tickpipe-egress-database"]["spec"]["egress"]
    assert db_rule["to"][0]["ipBlock"]["cidr"] != "0.0.0.0/0"
    (kafka_rule,) = policies["tickpipe-egress-kafka"]["spec"]["egress"]
    assert kafka_rule["ports"] == [{"port": 9093, "protocol": "TCP"}]


def test_operations_guide_names_every_secret_production_mounts() -> None:
    """docs/operations.md tells the platform team which Secrets to create: all of them."""
    target = "overlays/production"
    names: set[str] = set()
    for w in [*of_kind(target, "Deployment").values(), *of_kind(target, "Job").values()]:
        for v in w["spec"]["template"]["spec"].get("volumes", []):
            if "secret" in v:
                names.add(v["secret"]["secretName"])
            names |= {s["secret"]["name"] for s in v.get("projected", {}).get("sources", [])}
    for ta in of_kind(target, "TriggerAuthentication").values():
        names |= {r["name"] for r in ta["spec"]["secretTargetRef"]}
    assert names >= {"tickpipe-db", "tickpipe-kafka-user", "tickpipe-kafka-ca"}
    guide = (ROOT / "docs" / "operations.md").read_text()
    missing = sorted(n for n in names if f"`{n}`" not in guide and f" {n} " not in guide)
    assert not missing, f"docs/operations.md does not say how to create {missing}"
