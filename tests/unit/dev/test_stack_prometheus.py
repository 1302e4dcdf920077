"""tickpipe_dev.stack.prometheus: the local copy of deploy/prometheus/prometheus.yml."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from tickpipe_dev.stack import prometheus
from tickpipe_dev.stack.paths import find_repo_root
from tickpipe_shared.config import DEFAULT_METRICS_PORTS

ROOT = find_repo_root(Path(__file__))


def test_render_keeps_the_project_config_and_writes_local_targets(tmp_path: Path) -> None:
    source = yaml.safe_load((ROOT / prometheus.CONFIG).read_text())
    config_path = prometheus.render(ROOT, tmp_path, DEFAULT_METRICS_PORTS, scrape_interval="1s")
    config = yaml.safe_load(config_path.read_text())
    assert config["scrape_configs"][0]["job_name"] == source["scrape_configs"][0]["job_name"]
    assert config["rule_files"] == [str(ROOT / "deploy/prometheus/alerts.yml")]
    assert config["global"]["scrape_interval"] == config["global"]["evaluation_interval"] == "1s"
    (sd_file,) = config["scrape_configs"][0]["file_sd_configs"][0]["files"]
    groups = yaml.safe_load((tmp_path / sd_file).read_text())
    assert {(g["targets"][0], g["labels"]["service"]) for g in groups} == {
        (f"127.0.0.1:{port}", name) for name, port in DEFAULT_METRICS_PORTS.items()
    }
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (bin/bootstrap)")
    checked = subprocess.run(["promtool", "check", "config", str(config_path)],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_render_without_interval_keeps_the_defaults(tmp_path: Path) -> None:
    config = yaml.safe_load(prometheus.render(ROOT, tmp_path, {"writer": 9104}).read_text())
    assert config["global"]["scrape_interval"] == "15s"
