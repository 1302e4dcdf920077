"""deploy/prometheus: the configuration and the alert rules pass promtool's checks, and every
alert rule has firing and quiet cases in alerts_test.yml that `promtool test rules` runs.

promtool comes with Debian's ``prometheus`` package (bin/bootstrap installs it). Without it the
tests skip, except under CI (``CI=true``), where a missing promtool is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROM_DIR = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool not found: bin/bootstrap installs Debian's prometheus package")
        pytest.skip("promtool not installed (Debian package prometheus; run bin/bootstrap)")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=PROM_DIR, capture_output=True, text=True, timeout=120
    )


def alert_names() -> list[str]:
    rules = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    return [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]


def test_check_rules() -> None:
    result = run("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


def test_check_config(tmp_path: Path) -> None:
    # `check config` also checks the rule file and requires the file_sd file to exist: check a
    # copy with the compose targets in place, as docker compose mounts them.
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(PROM_DIR / name, tmp_path / name)
    (tmp_path / "targets").mkdir()
    shutil.copy(PROM_DIR / "compose-targets.yml", tmp_path / "targets" / "tickpipe.yml")
    result = subprocess.run(
        [promtool(), "check", "config", "prometheus.yml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_unit_tests() -> None:
    result = run("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_firing_and_quiet_cases() -> None:
    tests = yaml.safe_load((PROM_DIR / "alerts_test.yml").read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
        # A firing check is also a quiet one for the series beside it that must not alert:
        # exp_alerts lists every alert expected, so any other series alerting fails the test.
        names = {s["series"] for s in case["input_series"]}
        if len(names) > 1:
            quiet |= {c["alertname"] for c in case.get("alert_rule_test", [])}
    for name in alert_names():
        assert name in firing, f"{name}: no case in alerts_test.yml where it fires"
        assert name in quiet, f"{name}: no case in alerts_test.yml where it stays quiet"
