"""deploy/k8s (Kustomize base) and deploy/grafana agree with the code and with docker-compose.

Manifests are parsed, not applied (no cluster here). ``kubectl kustomize`` is run when kubectl
is installed. The dashboard may only query metrics that the code registers.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from tickpipe_api.settings import ApiSettings
from tickpipe_shared.config import DEFAULT_METRICS_PORTS, Settings

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
DASHBOARD = ROOT / "deploy" / "grafana" / "tickpipe.json"
SERVICES = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))
SECRETS = {
    "tickpipe-db": {"TICKPIPE_DATABASE_URL"},
    "tickpipe-sources": {"TICKPIPE_POLYGON_API_KEY", "TICKPIPE_DERIV_TOKEN"},
}
SECRET_KEYS = set().union(*SECRETS.values())


def setting_env_names() -> set[str]:
    out = set()
    for cls in (Settings, ApiSettings):  # the shared settings and the API's own
        prefix = cls.model_config.get("env_prefix", "")
        out |= {f"{prefix}{name}".upper() for name in cls.model_fields}
    return out


@cache
def documents() -> dict[Path, list[dict[str, Any]]]:
    """Every YAML document under deploy/k8s, by file."""
    out: dict[Path, list[dict[str, Any]]] = {}
    for path in sorted(K8S.rglob("*.y*ml")):
        out[path] = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return out


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for docs in documents().values() for d in docs if d.get("kind") == kind]


def by_name(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in of_kind(kind)}


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def workloads() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("Deployment", "Job"):
        for d in of_kind(kind):
            yield f"{kind}/{d['metadata']['name']}", d


@cache
def configmap() -> dict[str, Any]:
    maps = of_kind("ConfigMap")
    assert len(maps) == 1
    return maps[0]


@cache
def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return services


def deployment(svc: str) -> dict[str, Any]:
    return by_name("Deployment")[f"tickpipe-{svc}"]


def env_list(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


# --- manifests ---------------------------------------------------------------------------------


def test_every_yaml_parses_and_has_a_kind() -> None:
    assert documents(), "no manifests under deploy/k8s"
    for path, docs in documents().items():
        assert docs, f"{path} is empty"
        for d in docs:
            assert d.get("kind") and d.get("apiVersion"), path


def test_kustomization_lists_every_manifest_but_the_template() -> None:
    kust = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    resources = kust["resources"]
    assert len(resources) == len(set(resources))
    for r in resources:
        assert (BASE / r).is_file(), r
    manifests = {
        p.name
        for p in BASE.glob("*.yaml")
        if p.name != "kustomization.yaml" and ".example." not in p.name
    }
    assert set(resources) == manifests
    assert kust["namespace"] == by_name("Namespace")["tickpipe"]["metadata"]["name"]


def test_secret_is_only_a_template() -> None:
    secrets = of_kind("Secret")
    assert sorted(s["metadata"]["name"] for s in secrets) == sorted(SECRETS)
    kust = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert "secret.example.yaml" not in kust["resources"]
    for secret in secrets:
        data = secret["stringData"]
        assert set(data) == SECRETS[secret["metadata"]["name"]]
        assert all("CHANGE-ME" in v for v in data.values())


def test_configmap_keys_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    data = configmap()["data"]
    assert set(data) <= setting_env_names(), sorted(set(data) - setting_env_names())
    assert not set(data) & SECRET_KEYS, "secrets belong in the Secret"
    assert "TICKPIPE_METRICS_PORT" not in data, "each Deployment sets its own port"
    # The values are valid settings, read the way a pod reads them: from the environment.
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.topic_partitions == int(data["TICKPIPE_TOPIC_PARTITIONS"])


@pytest.mark.parametrize("svc", SERVICES)
def test_deployment_image_and_command_match_the_service(svc: str) -> None:
    dep = deployment(svc)
    (container,) = containers(dep)
    assert container["image"] == compose_services()[svc]["image"]
    assert container["image"].split(":")[0] == f"tickpipe/{svc}"
    scripts = tomllib.loads((ROOT / "services" / svc / "pyproject.toml").read_text())["project"][
        "scripts"
    ]
    assert container["command"] == [f"tickpipe-{svc}"]
    assert container["command"][0] in scripts


def test_every_service_has_one_deployment() -> None:
    assert sorted(by_name("Deployment")) == [f"tickpipe-{s}" for s in SERVICES]


@pytest.mark.parametrize("name", ["Deployment", "Job"])
def test_env_references_are_real_settings(name: str) -> None:
    names = setting_env_names()
    cm_name = configmap()["metadata"]["name"]
    for ref, workload in workloads():
        if not ref.startswith(name):
            continue
        for c in containers(workload):
            sources = c.get("envFrom", [])
            assert sources, f"{ref}: no envFrom"
            for src in sources:
                assert set(src) == {"configMapRef"}, f"{ref}: unexpected envFrom {src}"
                assert src["configMapRef"]["name"] == cm_name
            for env_name, env in env_list(c).items():
                assert env_name in names, f"{ref}: {env_name} is not a Settings field"
                secret = env.get("valueFrom", {}).get("secretKeyRef")
                if secret:
                    assert secret["key"] in SECRETS[secret["name"]]
                    assert env_name == secret["key"]


@pytest.mark.parametrize("svc", SERVICES)
def test_metrics_port_probes_and_scrape_annotations(svc: str) -> None:
    port = DEFAULT_METRICS_PORTS[svc]
    dep = deployment(svc)
    (container,) = containers(dep)
    assert env_list(container)["TICKPIPE_METRICS_PORT"]["value"] == str(port)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    # The API also serves HTTP, and is ready when its database answers (/readyz there).
    http = {"http": 8000} if svc == "api" else {}
    assert ports == {"metrics": port, **http}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        if svc == "api" and probe == "readinessProbe":
            assert (get["path"], get["port"]) == ("/readyz", "http")
            continue
        assert get["path"] == "/healthz"
        assert get["port"] in ("metrics", port)
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("svc", SERVICES)
def test_deployment_resources_security_and_replicas(svc: str) -> None:
    dep = deployment(svc)
    (container,) = containers(dep)
    assert {"requests", "limits"} <= set(container["resources"])
    assert container["resources"]["limits"]["memory"]
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert dep["spec"]["replicas"] <= int(configmap()["data"]["TICKPIPE_TOPIC_PARTITIONS"])
    # The writer stores; the fetcher's planner reads the ingest log to resume (skip_existing);
    # the API reads everything.
    needs_db = "TICKPIPE_DATABASE_URL" in env_list(container)
    assert needs_db == (svc in ("writer", "fetcher", "api"))


def test_fetcher_instrument_cache_is_writable() -> None:
    (container,) = containers(deployment("fetcher"))
    cache_dir = configmap()["data"]["TICKPIPE_INSTRUMENT_CACHE_DIR"]
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert any(cache_dir.startswith(m.rstrip("/") + "/") for m in mounts), (cache_dir, mounts)


def test_pod_disruption_budgets_select_deployments() -> None:
    pdbs = of_kind("PodDisruptionBudget")
    assert {p["metadata"]["name"] for p in pdbs} == {f"tickpipe-{s}" for s in SERVICES}
    for pdb in pdbs:
        dep = by_name("Deployment")[pdb["metadata"]["name"]]
        assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]


def test_jobs_migrate_and_create_topics() -> None:
    jobs = by_name("Job")
    assert set(jobs) == {"tickpipe-db-migrate", "tickpipe-create-topics"}
    writer_image = compose_services()["writer"]["image"]
    (migrate,) = containers(jobs["tickpipe-db-migrate"])
    assert migrate["command"] == ["tickpipe", "db", "migrate"]
    assert migrate["image"] == writer_image
    assert env_list(migrate)["TICKPIPE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == (
        "tickpipe-db"
    )
    (topics,) = containers(jobs["tickpipe-create-topics"])
    assert topics["image"] == writer_image
    assert topics["command"] == compose_services()["topics"]["command"]
    for job in jobs.values():
        assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_builds() -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(BASE)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    kinds = sorted(d["kind"] for d in built)
    assert kinds.count("Deployment") == len(SERVICES)
    assert kinds.count("Job") == 2
    assert all(
        d["metadata"].get("namespace") == "tickpipe" for d in built if d["kind"] != "Namespace"
    )


# --- Grafana dashboard -------------------------------------------------------------------------

#: What the dashboard must show (the metrics behind the panels the pipeline needs).
REQUIRED_METRICS = {
    "tickpipe_units_total",  # units by outcome
    "tickpipe_ticks_total",  # ticks/s by stage
    "tickpipe_stage_latency_seconds_bucket",  # stage latency p50/p95
    "tickpipe_errors_total",  # errors by class
    "tickpipe_checkpoint_retries_total",  # checkpoint retries
    "tickpipe_fetcher_http_requests_total",  # fetcher HTTP status
    "tickpipe_validator_rule_hits_total",  # validator rule hits
    "tickpipe_writer_transaction_seconds_bucket",  # writer transaction seconds
}

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


#: The modules that define tickpipe's metrics (shared, and each service's metrics.py).
METRICS_MODULES = (
    "tickpipe_shared.metrics",
    "tickpipe_fetcher.metrics",
    "tickpipe_decoder.metrics",
    "tickpipe_validator.metrics",
    "tickpipe_writer.metrics",
    "tickpipe_tracker.metrics",
    "tickpipe_api.metrics",
)


@cache
def registered_series() -> frozenset[str]:
    """Every series name the services can expose, from the Prometheus registry after importing
    the shared and per-service metrics modules."""
    for module in METRICS_MODULES:
        importlib.import_module(module)
    names: set[str] = set()
    for family in REGISTRY.collect():
        names |= {family.name + s for s in _SUFFIXES.get(family.type, ("",))}
        names |= {s.name for s in family.samples}
    return frozenset(names)


def service_metric_modules() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "services").glob("*/src/*/metrics.py"))


@cache
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> list[dict[str, Any]]:
    out = []
    for p in dashboard()["panels"]:
        out.append(p)
        out += p.get("panels", [])
    return out


def queried_metrics() -> set[str]:
    exprs = [t["expr"] for p in panels() for t in p.get("targets", [])]
    for var in dashboard()["templating"]["list"]:
        q = var.get("query")
        if isinstance(q, dict):
            exprs.append(q.get("query", ""))
        elif var.get("type") == "query":
            exprs.append(str(q))
    return {m for e in exprs for m in re.findall(r"\btickpipe_[a-z0-9_]+", e)}


def test_registry_covers_every_service_metrics_module() -> None:
    # The registry import above must include every services/*/src/*/metrics.py.
    expected = {m.removesuffix(".metrics") for m in METRICS_MODULES} - {"tickpipe_shared"}
    assert set(service_metric_modules()) == expected


def test_dashboard_queries_only_registered_metrics() -> None:
    queried = queried_metrics()
    assert queried
    unknown = sorted(queried - registered_series())
    assert not unknown, f"dashboard queries metrics the code does not define: {unknown}"


def test_dashboard_covers_the_pipeline_metrics() -> None:
    missing = sorted(REQUIRED_METRICS - queried_metrics())
    assert not missing, f"dashboard has no panel for {missing}"
    assert REQUIRED_METRICS <= registered_series()


def test_dashboard_is_portable() -> None:
    dash = dashboard()
    assert dash["uid"] and dash["title"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))
    for p in panels():
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
            # Counters are always rated, never graphed raw.
            for m in re.findall(r"\btickpipe_[a-z0-9_]+_total\b", t["expr"]):
                assert re.search(rf"(rate|increase)\({m}\b", t["expr"]), (p["title"], m)
