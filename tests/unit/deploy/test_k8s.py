"""deploy/k8s (the Kustomize base) and deploy/grafana agree with the code and with docker-compose.

The base's manifests are parsed, not applied (no cluster here); rendering every overlay and
validating it against the Kubernetes and KEDA schemas is test_k8s_render.py. The dashboard may
only query metrics that the code registers.
"""

from __future__ import annotations

import importlib
import json
import re
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from support.cli import cli_commands
from support.deploy import SECRET_SETTINGS, setting_env_names
from tickpipe_shared.config import DEFAULT_METRICS_PORTS, Settings
from tickpipe_shared.kafka.topics import (
    DECODED_BATCHES,
    FETCH_REQUESTS,
    FETCH_UNITS,
    RAW_PAYLOADS,
    VALIDATED_BATCHES,
)

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
DASHBOARD = ROOT / "deploy" / "grafana" / "tickpipe.json"
SERVICES = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))
#: The Secrets the pods mount (templates in base/secret.example.yaml), and their keys.
SECRETS = {
    "tickpipe-db": {"database-url"},
    "tickpipe-db-ca": {"ca.crt"},
    "tickpipe-sources": {"polygon-api-key", "deriv-token"},
}
#: The data-path stages KEDA scales: (consumer group stage name, input topic) per Deployment.
SCALED_STAGES = {
    "fetcher": [("fetcher-planner", FETCH_REQUESTS), ("fetcher", FETCH_UNITS)],
    "decoder": [("decoder", RAW_PAYLOADS)],
    "validator": [("validator", DECODED_BATCHES)],
    "writer": [("writer", VALIDATED_BATCHES)],
}
#: Pods that reach the database: the writer stores, the fetcher's planner reads the ingest log
#: to resume (skip_existing), the API reads everything, the setup Job migrates.
DATABASE_USERS = {"tickpipe-writer", "tickpipe-fetcher", "tickpipe-api", "tickpipe-setup"}


@cache
def documents() -> dict[Path, list[dict[str, Any]]]:
    """Every YAML document of the base, by file (overlays hold patches: they are checked
    rendered, in test_k8s_render.py)."""
    out: dict[Path, list[dict[str, Any]]] = {}
    for path in sorted(BASE.glob("*.y*ml")):
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
    assert not set(data) & SECRET_SETTINGS, "secrets are files of mounted Secrets"
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


def secret_mounts(workload: dict[str, Any], container: dict[str, Any]) -> dict[str, set[str]]:
    """Mount path → names of the Secrets behind it (secret or projected volumes)."""
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"].get("volumes", [])}
    out: dict[str, set[str]] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        names = set()
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"]["name"])
        if names:
            assert mount.get("readOnly") is True, mount
            out[mount["mountPath"]] = names
    return out


@pytest.mark.parametrize("name", ["Deployment", "Job"])
def test_env_references_are_real_settings_and_secrets_are_files(name: str) -> None:
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
            mounts = secret_mounts(workload, c)
            for env_name, env in env_list(c).items():
                assert "valueFrom" not in env, f"{ref}: {env_name}: secrets are files, not env"
                assert env_name not in SECRET_SETTINGS, f"{ref}: {env_name} as plain env"
                if env_name.endswith("_FILE"):
                    # TICKPIPE_<FIELD>_FILE: a file inside a mounted Secret.
                    field = env_name.removesuffix("_FILE")
                    assert field in SECRET_SETTINGS, f"{ref}: {env_name}"
                    folder = env["value"].rsplit("/", 1)[0]
                    assert folder in mounts, f"{ref}: {env['value']} is in no Secret mount"
                else:
                    assert env_name in names, f"{ref}: {env_name} is not a Settings field"


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


@pytest.mark.parametrize("ref", [ref for ref, _ in workloads()])
def test_pods_are_locked_down(ref: str) -> None:
    workload = dict(workloads())[ref]
    pod = workload["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for c in containers(workload):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert {"requests", "limits"} <= set(c["resources"])
        assert c["resources"]["limits"]["memory"] and c["resources"]["limits"]["cpu"]
        # A read-only root: the writable places are emptyDirs (/tmp at least).
        writable = {m["mountPath"] for m in c["volumeMounts"] if "emptyDir" in volumes[m["name"]]}
        assert "/tmp" in writable, ref


@pytest.mark.parametrize("svc", SERVICES)
def test_deployment_selector_and_database_access(svc: str) -> None:
    dep = deployment(svc)
    (container,) = containers(dep)
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    needs_db = "TICKPIPE_DATABASE_URL_FILE" in env_list(container)
    assert needs_db == (f"tickpipe-{svc}" in DATABASE_USERS)


@pytest.mark.parametrize("svc", SERVICES)
def test_replicas_belong_to_an_autoscaler(svc: str) -> None:
    """KEDA (data path) or the HPA (API) own spec.replicas; only the tracker has a fixed one."""
    dep = deployment(svc)
    scaled = {so["spec"]["scaleTargetRef"]["name"] for so in of_kind("ScaledObject")}
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in of_kind("HorizontalPodAutoscaler")}
    name = f"tickpipe-{svc}"
    assert len([x for x in (name in scaled, name in hpas) if x]) <= 1, "two autoscalers"
    if svc in SCALED_STAGES:
        assert name in scaled
    elif svc == "api":
        assert name in hpas
    if name in scaled or name in hpas:
        assert "replicas" not in dep["spec"], f"{name}: the autoscaler owns replicas"
    else:
        assert 1 <= dep["spec"]["replicas"] <= int(configmap()["data"]["TICKPIPE_TOPIC_PARTITIONS"])


@pytest.mark.parametrize("svc", sorted(SCALED_STAGES))
def test_scaled_objects_follow_the_stage_consumer_groups(svc: str) -> None:
    settings = Settings()  # the default prefixes, which the manifests spell out
    data = configmap()["data"]
    assert data["TICKPIPE_TOPIC_PREFIX"] == settings.topic_prefix
    assert data["TICKPIPE_CONSUMER_GROUP_PREFIX"] == settings.consumer_group_prefix
    so = by_name("ScaledObject")[f"tickpipe-{svc}"]
    spec = so["spec"]
    assert spec["scaleTargetRef"]["name"] == f"tickpipe-{svc}"
    triggers = spec["triggers"]
    assert {(t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in triggers} == {
        (settings.group(stage), settings.topic(topic)) for stage, topic in SCALED_STAGES[svc]
    }
    for t in triggers:
        meta = t["metadata"]
        assert t["type"] == "kafka"
        assert meta["bootstrapServersFromEnv"] == "TICKPIPE_KAFKA_BOOTSTRAP"
        assert "TICKPIPE_KAFKA_BOOTSTRAP" in data
        assert int(meta["lagThreshold"]) > 0
        assert meta["allowIdleConsumers"] == "false"
        assert meta["offsetResetPolicy"] == "earliest"  # as the services' consumers
    # Partitions are the ceiling of useful replicas.
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["maxReplicaCount"] == int(data["TICKPIPE_TOPIC_PARTITIONS"])


def test_fetch_rate_budget_assumes_the_fetcher_maximum() -> None:
    """Each fetcher takes rate / TICKPIPE_FETCH_REPLICAS: at the autoscaler's maximum the fleet
    still stays within the politeness budget."""
    maximum = by_name("ScaledObject")["tickpipe-fetcher"]["spec"]["maxReplicaCount"]
    assert int(configmap()["data"]["TICKPIPE_FETCH_REPLICAS"]) == maximum


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
        assert pdb["spec"]["maxUnavailable"] == 1


def test_setup_job_creates_topics_then_migrates() -> None:
    (job,) = of_kind("Job")
    assert job["metadata"]["name"] == "tickpipe-setup"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("OnFailure", "Never")
    (topics,) = pod["initContainers"]
    (migrate,) = pod["containers"]
    assert topics["command"] == ["tickpipe", "topics", "create"]
    assert migrate["command"] == ["tickpipe", "db", "migrate"]
    assert {("topics", "create"), ("db", "migrate")} <= cli_commands()
    writer_image = compose_services()["writer"]["image"]
    assert topics["image"] == migrate["image"] == writer_image
    assert env_list(migrate)["TICKPIPE_DATABASE_URL_FILE"]["value"].startswith("/etc/tickpipe/db/")


# --- NetworkPolicies ---------------------------------------------------------------------------


def policies_for(pod_name: str, direction: str) -> list[dict[str, Any]]:
    """The base's NetworkPolicies of ``direction`` (Ingress/Egress) that select ``pod_name``."""
    out = []
    for policy in of_kind("NetworkPolicy"):
        spec = policy["spec"]
        if direction not in spec["policyTypes"]:
            continue
        selector = spec["podSelector"]
        labels = selector.get("matchLabels", {})
        exprs = selector.get("matchExpressions", [])
        if labels and labels.get("app.kubernetes.io/name") != pod_name:
            continue
        if any(pod_name not in e["values"] for e in exprs):
            continue
        out.append(policy)
    return out


def egress_ports(pod_name: str) -> set[int]:
    ports: set[int] = set()
    for policy in policies_for(pod_name, "Egress"):
        for rule in policy["spec"].get("egress", []):
            for p in rule["ports"]:
                ports |= set(range(p["port"], p.get("endPort", p["port"]) + 1))
    return ports


def test_network_default_deny() -> None:
    deny = by_name("NetworkPolicy")["tickpipe-default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


@pytest.mark.parametrize("pod", [*(f"tickpipe-{s}" for s in SERVICES), "tickpipe-setup"])
def test_network_egress_is_what_each_pod_needs(pod: str) -> None:
    ports = egress_ports(pod)
    assert {53, 9092} <= ports, "DNS and Kafka for everyone"
    assert (5432 in ports) == (pod in DATABASE_USERS)
    assert (443 in ports) == (pod == "tickpipe-fetcher"), "only the fetcher reaches the sources"


def test_network_ingress_only_metrics_and_the_api() -> None:
    rules = [
        (p["metadata"]["name"], rule)
        for p in of_kind("NetworkPolicy")
        for rule in p["spec"].get("ingress", [])
    ]
    ports = {name: {port["port"] for port in rule["ports"]} for name, rule in rules}
    assert ports == {"tickpipe-ingress-metrics": {"metrics"}, "tickpipe-ingress-api": {"http"}}
    (metrics,) = [r for n, r in rules if n == "tickpipe-ingress-metrics"]
    assert metrics["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    api = by_name("NetworkPolicy")["tickpipe-ingress-api"]["spec"]["podSelector"]
    assert api == {"matchLabels": {"app.kubernetes.io/name": "tickpipe-api"}}
    # The named ports exist on the pods they open.
    for svc in SERVICES:
        (c,) = containers(deployment(svc))
        assert "metrics" in {p["name"] for p in c["ports"]}


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
