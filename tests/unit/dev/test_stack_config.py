"""Repository discovery, PostgreSQL settings and service environments of the local stack."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from tickpipe_dev.stack import postgres, services
from tickpipe_dev.stack.api import ComponentStatus
from tickpipe_dev.stack.main import format_status
from tickpipe_dev.stack.paths import LOCAL_DIR_ENV, StackError, StackPaths, find_repo_root


def _workspace(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text('[tool.uv.workspace]\nmembers = ["dev"]\n')
    member = tmp_path / "dev" / "src" / "pkg"
    member.mkdir(parents=True)
    (tmp_path / "dev" / "pyproject.toml").write_text('[project]\nname = "dev"\n')
    return member


def test_repo_root_skips_member_pyprojects(tmp_path: Path) -> None:
    member = _workspace(tmp_path)
    assert find_repo_root(member / "module.py") == tmp_path


def test_repo_root_of_this_checkout_holds_the_pom() -> None:
    assert (find_repo_root() / "deploy" / "local" / "pom.xml").is_file()


def test_no_workspace_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"tool\.uv\.workspace"):
        find_repo_root(tmp_path / "x.py")


def test_local_dir_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOCAL_DIR_ENV, raising=False)
    assert StackPaths.discover(tmp_path).local == tmp_path / ".local"
    monkeypatch.setenv(LOCAL_DIR_ENV, "elsewhere")
    paths = StackPaths.discover(tmp_path)
    assert paths.local == tmp_path / "elsewhere"
    assert paths.pid_file("kafka") == tmp_path / "elsewhere" / "run" / "kafka.pid"
    monkeypatch.setenv(LOCAL_DIR_ENV, str(tmp_path / "abs"))
    assert StackPaths.discover(tmp_path).kafka_data == tmp_path / "abs" / "kafka" / "data"


def test_dukascopy_data_is_beside_the_repo(tmp_path: Path) -> None:
    paths = StackPaths(root=tmp_path / "main", local=tmp_path / "main" / ".local")
    assert paths.dukascopy_data == tmp_path / "shared" / "data" / "dukascopy"


# --- PostgreSQL -------------------------------------------------------------------------------


def test_newest_postgres_binaries_win(tmp_path: Path) -> None:
    for version in ("9.6", "15", "16", "13"):
        bin_dir = tmp_path / version / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "pg_ctl").touch(mode=0o755)
    (tmp_path / "17" / "bin").mkdir(parents=True)  # no pg_ctl: not a candidate
    assert postgres.find_bin_dir(tmp_path) == tmp_path / "16" / "bin"


def test_postgres_conf_listens_on_loopback_port_55432(tmp_path: Path) -> None:
    conf = postgres.render_conf(tmp_path / "sock")
    assert "port = 55432" in conf
    assert "listen_addresses = '127.0.0.1'" in conf
    assert f"unix_socket_directories = '{tmp_path / 'sock'}'" in conf
    assert "shared_preload_libraries" not in conf
    assert "shared_preload_libraries = 'timescaledb'" in postgres.render_conf(
        tmp_path, preload=("timescaledb",)
    )


def test_default_dsn_matches_the_shared_settings() -> None:
    from tickpipe_shared.config import Settings

    default = Settings.model_fields["database_url"].default.get_secret_value()
    assert postgres.dsn() == default


def test_traversal_is_fixed_inside_local_only(tmp_path: Path) -> None:
    # We own every directory here, so the owner bits are the ones that count for "us".
    me = postgres.RunAs(uid=os.getuid(), gid=os.getgid())
    local = tmp_path / "outer" / ".local"
    target = local / "pg" / "data"
    target.mkdir(parents=True)
    (local / "pg").chmod(0o600)
    postgres.check_traversable(target, me, local)
    assert (local / "pg").stat().st_mode & stat.S_IXUSR

    (tmp_path / "outer").chmod(0o600)
    try:
        with pytest.raises(StackError, match=r"cannot traverse .*outer"):
            postgres.check_traversable(target, me, local)
    finally:
        (tmp_path / "outer").chmod(0o755)


def test_running_as_ourselves_needs_no_user_switch() -> None:
    assert postgres.RunAs().popen_kwargs() == {}
    assert postgres.RunAs(101, 104).popen_kwargs() == {
        "user": 101, "group": 104, "extra_groups": [],
    }  # fmt: skip


# --- services ---------------------------------------------------------------------------------


def test_service_env_sets_the_metrics_port() -> None:
    env = services.service_env("validator", {"PATH": "/bin"})
    assert env["TICKPIPE_METRICS_PORT"] == "9103"
    assert env["PATH"] == "/bin"
    assert "TICKPIPE_DUKASCOPY_JSON_URL" not in env


def test_service_env_points_at_the_standin_unless_set() -> None:
    env = services.service_env("fetcher", {}, standin_port=8765)
    assert env["TICKPIPE_DUKASCOPY_JSON_URL"] == "http://127.0.0.1:8765/v1"
    assert env["TICKPIPE_DUKASCOPY_BI5_URL"] == "http://127.0.0.1:8765/datafeed"
    mine = {"TICKPIPE_DUKASCOPY_JSON_URL": "http://example/v1"}
    env = services.service_env("fetcher", mine, standin_port=8765)
    assert env["TICKPIPE_DUKASCOPY_JSON_URL"] == "http://example/v1"


def test_services_have_distinct_ports() -> None:
    ports = [services.metrics_port(name) for name in services.SERVICES]
    assert ports == [9101, 9102, 9103, 9104, 9105, 9106]
    assert services.health_url("writer") == "http://127.0.0.1:9104/healthz"


def test_the_local_stack_runs_the_api_with_auth_off_explicitly() -> None:
    env = services.service_env("api", {})
    assert env["TICKPIPE_API_AUTH"] == "off"
    assert env["TICKPIPE_API_PORT"] == str(services.API_PORT) == "8000"
    assert "TICKPIPE_API_AUTH" not in services.service_env("writer", {})
    assert services.service_env("api", {"TICKPIPE_API_AUTH": "on"})["TICKPIPE_API_AUTH"] == "on"


def test_status_table() -> None:
    rows = [
        ComponentStatus("kafka", 12, 9092, True, True, "k.log"),
        ComponentStatus("writer", None, 9104, False, False, "w.log"),
        ComponentStatus("fetcher", None, 9101, False, True, "f.log"),
    ]
    lines = format_status(rows).splitlines()
    assert lines[0].split() == ["COMPONENT", "PID", "PORT", "RUNNING", "HEALTHY"]
    assert lines[1].split() == ["kafka", "12", "9092", "yes", "yes"]
    assert lines[2].split() == ["writer", "-", "9104", "no", "no"]
    assert lines[3].split() == ["fetcher", "-", "9101", "foreign", "yes"]
    pg = ComponentStatus(
        "postgres", 7, 55432, True, True, "p.log", "TimescaleDB 2.28.3 on PostgreSQL 15.20"
    )
    assert (
        format_status([pg]).splitlines()[1].endswith("yes  TimescaleDB 2.28.3 on PostgreSQL 15.20")
    )


def test_the_private_timescaledb_tree_wins(tmp_path: Path) -> None:
    system = tmp_path / "usr-lib-postgresql"
    private = tmp_path / "pgserver"
    for base in (
        system / "15" / "bin",
        private / "k" / "usr" / "lib" / "postgresql" / "15" / "bin",
    ):
        base.mkdir(parents=True)
        (base / "pg_ctl").touch(mode=0o755)
    assert postgres.find_bin_dir(system, private=private) == system / "15" / "bin"  # no current
    (private / "current").symlink_to("k")
    assert postgres.find_bin_dir(system, private=private) == (
        private / "current" / "usr" / "lib" / "postgresql" / "15" / "bin"
    )
