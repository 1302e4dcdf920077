"""docker-compose.yml, the Dockerfile (one recipe, ``--build-arg SERVICE``), .dockerignore and
docs/configuration.md agree with the code: service list, console scripts, Settings fields and
default metrics ports.

There is no Docker engine here, so nothing is built or run: the files are parsed and checked.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.cli import cli_commands
from support.deploy import setting_env_names
from tickpipe_shared.config import DEFAULT_METRICS_PORTS

ROOT = Path(__file__).resolve().parents[3]
SERVICES = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))
PIPELINE_ENV = {
    "TICKPIPE_KAFKA_BOOTSTRAP",
    "TICKPIPE_DATABASE_URL",
    "TICKPIPE_DUKASCOPY_JSON_URL",
    "TICKPIPE_DUKASCOPY_BI5_URL",
    "TICKPIPE_METRICS_PORT",
}


@cache
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def pyproject(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


@cache
def workspace_members() -> dict[str, Path]:
    """Package name → member directory (relative to the repo root)."""
    root = pyproject(ROOT / "pyproject.toml")
    members: dict[str, Path] = {}
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        for d in sorted(ROOT.glob(pattern)):
            if (d / "pyproject.toml").is_file():
                name = pyproject(d / "pyproject.toml")["project"]["name"]
                members[name] = d.relative_to(ROOT)
    return members


def workspace_closure(packages: set[str]) -> set[str]:
    """``packages`` plus every workspace member they depend on, transitively."""
    members = workspace_members()
    out: set[str] = set()
    todo = list(packages)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.add(name)
        deps = pyproject(ROOT / members[name] / "pyproject.toml")["project"].get("dependencies", [])
        for dep in deps:
            dep_name = re.split(r"[\s<>=!~\[;]", dep, maxsplit=1)[0]
            if dep_name in members:
                todo.append(dep_name)
    return out


DOCKERFILE = ROOT / "Dockerfile"


@cache
def dockerfile_instructions() -> tuple[str, ...]:
    """Instructions of the Dockerfile, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return tuple(
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    )


def dockerfile_lines(svc: str) -> list[str]:
    """The instructions as a build with ``--build-arg SERVICE=svc`` sees them."""
    return [ln.replace("${SERVICE}", svc) for ln in dockerfile_instructions()]


def stages(lines: list[str]) -> list[list[str]]:
    """The build stages, each from its ``FROM`` line to the next."""
    starts = [i for i, ln in enumerate(lines) if ln.upper().startswith("FROM ")]
    return [lines[a:b] for a, b in zip(starts, [*starts[1:], len(lines)], strict=True)]


def final_stage(lines: list[str]) -> list[str]:
    return stages(lines)[-1]


def console_scripts(member_dir: Path) -> dict[str, str]:
    scripts: dict[str, str] = pyproject(ROOT / member_dir / "pyproject.toml")["project"].get(
        "scripts", {}
    )
    return scripts


# --- compose -----------------------------------------------------------------------------------


def test_services_found() -> None:
    assert SERVICES == ["api", "decoder", "fetcher", "tracker", "validator", "writer"]
    assert set(SERVICES) == set(DEFAULT_METRICS_PORTS)


@pytest.mark.parametrize("svc", SERVICES)
def test_every_service_is_built_from_the_one_dockerfile(svc: str) -> None:
    service = compose()["services"][svc]
    assert service["build"] == {
        "context": ".",
        "dockerfile": "Dockerfile",
        "args": {"SERVICE": svc},
    }
    assert service["image"].split(":")[0] == f"tickpipe/{svc}"


def test_every_build_uses_the_one_dockerfile() -> None:
    builds = {n: s["build"] for n, s in compose()["services"].items() if "build" in s}
    assert set(builds) >= set(SERVICES)
    for name, build in builds.items():
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE, name
        assert build["args"]["SERVICE"] in SERVICES, name


def test_no_per_service_dockerfiles_remain() -> None:
    assert not sorted((ROOT / "services").glob("*/Dockerfile"))


def test_services_sharing_an_image_build_it_the_same_way() -> None:
    builds: dict[str, Any] = {}
    for name, service in compose()["services"].items():
        if "build" in service:
            assert builds.setdefault(service["image"], service["build"]) == service["build"], name


def test_every_tickpipe_variable_is_a_setting() -> None:
    names = setting_env_names()
    used: set[str] = set()
    for service in compose()["services"].values():
        used |= {k for k in env_of(service) if k.startswith("TICKPIPE_")}
    # ${TICKPIPE_X:-default} interpolations too, wherever they are.
    used |= set(re.findall(r"\$\{(TICKPIPE_[A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    assert used, "compose sets no TICKPIPE_* variable"
    assert used <= names, f"not Settings fields: {sorted(used - names)}"


@pytest.mark.parametrize("svc", SERVICES)
def test_service_env_uses_the_local_stack_names(svc: str) -> None:
    env = env_of(compose()["services"][svc])
    assert set(env) >= PIPELINE_ENV
    assert env["TICKPIPE_KAFKA_BOOTSTRAP"].split(":")[0] in compose()["services"]
    dsn_host = re.match(r"postgresql://[^@]*@([^:/]+)", env["TICKPIPE_DATABASE_URL"])
    assert dsn_host and dsn_host.group(1) in compose()["services"]


@pytest.mark.parametrize("svc", SERVICES)
def test_metrics_port_matches_default(svc: str) -> None:
    port = DEFAULT_METRICS_PORTS[svc]
    service = compose()["services"][svc]
    assert env_of(service)["TICKPIPE_METRICS_PORT"] == str(port)
    published = [str(p) for p in service["ports"]]
    assert any(p.endswith(f":{port}") and p.split(":")[-2] == str(port) for p in published), (
        published
    )
    health = " ".join(service["healthcheck"]["test"])
    assert "/healthz" in health and "TICKPIPE_METRICS_PORT" in health


@pytest.mark.parametrize("svc", SERVICES)
def test_pipeline_services_wait_for_kafka_and_topics(svc: str) -> None:
    services = compose()["services"]
    deps = services[svc]["depends_on"]
    assert deps["kafka"]["condition"] == "service_healthy"
    assert deps["topics"]["condition"] == "service_completed_successfully"
    for dep in deps:
        assert dep in services
    if svc == "writer":
        assert deps["timescaledb"]["condition"] == "service_healthy"
        assert deps["db-migrate"]["condition"] == "service_completed_successfully"


def test_infrastructure() -> None:
    services = compose()["services"]
    kafka = services["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka["image"])
    kenv = env_of(kafka)
    assert "controller" in kenv["KAFKA_PROCESS_ROLES"] and "broker" in kenv["KAFKA_PROCESS_ROLES"]
    assert kenv["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "healthcheck" in kafka
    db = services["timescaledb"]
    assert db["image"].startswith("timescale/timescaledb:")
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    # The DSN the services use matches the database the container creates.
    denv = env_of(db)
    dsn = env_of(services["writer"])["TICKPIPE_DATABASE_URL"]
    assert dsn == (
        f"postgresql://{denv['POSTGRES_USER']}:{denv['POSTGRES_PASSWORD']}@timescaledb:5432/"
        f"{denv['POSTGRES_DB']}"
    )


def test_topic_creation_runs_the_cli() -> None:
    topics = compose()["services"]["topics"]
    assert topics["restart"] == "no"
    assert topics["command"] == ["tickpipe", "topics", "create"]
    assert ("topics", "create") in cli_commands()
    # It runs in an image that has the CLI.
    assert topics["image"] == compose()["services"]["writer"]["image"]


def test_db_migrate_runs_the_cli_from_the_writer_image() -> None:
    job = compose()["services"]["db-migrate"]
    assert job["command"] == ["tickpipe", "db", "migrate"]
    assert job["image"] == compose()["services"]["writer"]["image"]
    assert ("db", "migrate") in cli_commands()
    assert "tickpipe" in console_scripts(workspace_members()["tickpipe-cli"])
    assert "tickpipe-cli" in installed_packages("writer")


def test_observability_profile() -> None:
    services = compose()["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"]
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"])
    (sd_file,) = prom["scrape_configs"][0]["file_sd_configs"][0]["files"]
    assert mounts["./deploy/prometheus/compose-targets.yml"] == f"/etc/prometheus/{sd_file}"
    assert mounts["./deploy/prometheus/alerts.yml"] == f"/etc/prometheus/{prom['rule_files'][0]}"
    groups = yaml.safe_load((ROOT / "deploy/prometheus/compose-targets.yml").read_text())
    targets = {(t, g["labels"]["service"]) for g in groups for t in g["targets"]}
    assert targets == {(f"{svc}:{port}", svc) for svc, port in DEFAULT_METRICS_PORTS.items()}
    grafana_mounts = " ".join(services["grafana"]["volumes"])
    assert "./deploy/grafana/tickpipe.json:" in grafana_mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning" in grafana_mounts
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/tickpipe.yml").read_text()
    )
    dash_dir = provider["providers"][0]["options"]["path"]
    assert f"./deploy/grafana/tickpipe.json:{dash_dir}/tickpipe.json" in grafana_mounts


# --- Dockerfiles -------------------------------------------------------------------------------


def installed_packages(svc: str) -> set[str]:
    """The ``--package`` names of the Dockerfile's final ``uv sync`` for ``SERVICE=svc``."""
    syncs = [ln for ln in dockerfile_lines(svc) if ln.startswith("RUN uv sync")]
    assert syncs, "no `RUN uv sync`"
    args = shlex.split(syncs[-1])
    return {args[i + 1] for i, a in enumerate(args) if a == "--package"}


def test_dockerfile_is_multi_stage_on_a_pinned_base() -> None:
    lines = list(dockerfile_instructions())
    args = dict(ln[4:].split("=", 1) for ln in lines if ln.startswith("ARG ") and "=" in ln)
    # An exact Python patch release on a named Debian release, or a digest.
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base) or re.search(
        r"@sha256:[0-9a-f]{64}$", base
    ), base
    froms = [ln.split() for ln in lines if ln.startswith("FROM ")]
    assert len(froms) >= 2, "build and runtime stages"
    for f in froms:
        assert f[1] == "${PYTHON_IMAGE}" and f[2] == "AS", f
    names = [f[3] for f in froms]
    assert len(names) == len(set(names))
    runtime = final_stage(lines)
    # The runtime stage gets the venv from the build stage, nothing from the context.
    copies = [ln for ln in runtime if ln.startswith("COPY ")]
    assert copies and all(ln.startswith(f"COPY --from={names[0]} ") for ln in copies), copies
    assert not [ln for ln in runtime if "uv sync" in ln or "pip install" in ln]


def test_dockerfile_requires_the_service_argument() -> None:
    build = stages(list(dockerfile_instructions()))[0]
    assert "ARG SERVICE" in build
    assert any(ln.startswith('RUN test -n "$SERVICE"') and "exit 1" in ln for ln in build)
    assert "ARG SERVICE" in final_stage(list(dockerfile_instructions()))


@pytest.mark.parametrize("svc", SERVICES)
def test_dockerfile_cmd_runs_the_console_script(svc: str) -> None:
    scripts = console_scripts(Path("services") / svc)
    assert f"tickpipe-{svc}" in scripts
    runtime = final_stage(dockerfile_lines(svc))
    env = " ".join(ln for ln in runtime if ln.startswith("ENV "))
    assert f"TICKPIPE_SERVICE={svc}" in env
    cmds = [ln for ln in runtime if ln.startswith("CMD ")]
    assert len(cmds) == 1
    cmd = json.loads(cmds[0][4:])
    # exec: the service is PID 1 and gets SIGTERM itself.
    assert cmd[:2] == ["/bin/sh", "-c"]
    assert cmd[2].replace("$TICKPIPE_SERVICE", svc) == f'exec "tickpipe-{svc}"'


@pytest.mark.parametrize("svc", SERVICES)
def test_dockerfile_installs_the_service_with_uv(svc: str) -> None:
    lines = dockerfile_lines(svc)
    assert any(re.match(r'RUN pip install .*"?uv==[\d.]+"?', ln) for ln in lines)
    syncs = [ln for ln in lines if ln.startswith("RUN uv sync")]
    assert len(syncs) == 2, "dependencies layer, then the workspace packages"
    for sync in syncs:
        args = shlex.split(sync)
        assert {"--frozen", "--no-dev"} <= set(args), sync
    assert "--no-install-workspace" in syncs[0] and "--no-editable" in syncs[1]
    assert {f"tickpipe-{svc}", "tickpipe-cli"} == installed_packages(svc)
    assert f"tickpipe-{svc}" in workspace_members()


@pytest.mark.parametrize("svc", SERVICES)
def test_dockerfile_copies_every_workspace_member_it_installs(svc: str) -> None:
    members = workspace_members()
    copied = {
        shlex.split(ln)[1].rstrip("/")
        for ln in dockerfile_lines(svc)
        if ln.startswith("COPY ") and "--from" not in ln
    }
    assert {"pyproject.toml", "uv.lock"} <= {
        src
        for ln in dockerfile_lines(svc)
        if ln.startswith("COPY ")
        for src in shlex.split(ln)[1:-1]
    }
    for package in workspace_closure(installed_packages(svc)):
        assert str(members[package]) in copied, f"{svc}: {members[package]}/ not copied"
        assert f"{members[package]}/pyproject.toml" in copied, f"{svc}: {package} metadata"


def test_dockerfile_runtime_user_and_healthcheck() -> None:
    runtime = final_stage(list(dockerfile_instructions()))
    users = [ln.split()[1] for ln in runtime if ln.startswith("USER ")]
    assert users, "no USER: the image would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root USER (runAsNonRoot can check it)"
    assert any(f"--uid {uid}" in ln for ln in runtime if ln.startswith("RUN useradd"))
    health = [ln for ln in runtime if ln.startswith("HEALTHCHECK ")]
    assert len(health) == 1
    assert "/healthz" in health[0] and "TICKPIPE_METRICS_PORT" in health[0]
    assert "DEFAULT_METRICS_PORTS[os.environ['TICKPIPE_SERVICE']]" in health[0]
    code = json.loads(health[0].split(" CMD ", 1)[1])[2]
    compile(code, "<healthcheck>", "exec")


def test_dockerignore_excludes_local_state() -> None:
    patterns = {
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    }
    assert {".git", ".venv", ".local", "**/__pycache__", ".pytest_cache"} <= patterns
    # Nothing a Dockerfile copies may be ignored.
    for svc in SERVICES:
        for ln in dockerfile_lines(svc):
            if ln.startswith("COPY ") and "--from" not in ln:
                for src in shlex.split(ln)[1:-1]:
                    assert src.split("/")[0] not in patterns, f"{svc}: {src} is ignored"


# --- docs/configuration.md ---------------------------------------------------------------------


def test_configuration_md_documents_every_setting() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(n for n in setting_env_names() if f"`{n}`" not in text)
    assert not missing, f"docs/configuration.md lacks {missing}"


def test_configuration_md_table_has_no_stale_rows() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text.split("## All settings", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(TICKPIPE_[A-Z0-9_]+)` \|", section, flags=re.M)
    assert sorted(rows) == sorted(setting_env_names())
    assert len(rows) == len(set(rows))
