"""Herald's alert rules: promtool accepts them and their unit tests pass (each alert fires on
a synthetic series that breaks it and stays quiet on a healthy one); each has a severity and
a runbook that exists; and every metric they read is one Herald defines."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "infrastructure" / "deploy" / "prometheus"
SEVERITIES = {"P0", "P1", "P2", "P3"}
# Series Prometheus makes itself, and prometheus-client's own.
NOT_OURS = {"up"}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is needed: apt-get install prometheus"
    return subprocess.run(
        [promtool, *args], cwd=RULES, capture_output=True, text=True, timeout=120, check=False
    )


def _alerts() -> list[dict[str, object]]:
    groups = yaml.safe_load((RULES / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_checks_the_rules() -> None:
    checked = _promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_each_alert_fires_when_broken_and_stays_quiet_when_healthy() -> None:
    tested = _promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    spec = yaml.safe_load((RULES / "alerts_test.yml").read_text())
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in spec["tests"]:
        for case in test["alert_rule_test"]:
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    names = {str(rule["alert"]) for rule in _alerts()}
    assert names == fired, f"never shown firing: {names - fired}"
    assert names == quiet, f"never shown quiet: {names - quiet}"


def test_each_alert_has_a_severity_and_a_runbook() -> None:
    alerts = _alerts()
    assert len(alerts) >= 13
    for rule in alerts:
        name = rule["alert"]
        labels = rule["labels"]
        annotations = rule["annotations"]
        assert isinstance(labels, dict)
        assert isinstance(annotations, dict)
        assert labels["severity"] in SEVERITIES, name
        assert annotations["runbook_url"] == f"docs/runbooks/{name}.md"
        runbook = ROOT / str(annotations["runbook_url"])
        assert runbook.is_file(), f"{name}: no {runbook}"
        text = runbook.read_text()
        for section in ("## What it means", "## How to confirm", "## How to fix"):
            assert section in text, f"{runbook.name} lacks {section!r}"


def test_every_metric_the_rules_read_is_defined_by_herald() -> None:
    sources = "\n".join(path.read_text() for path in (ROOT / "infrastructure").rglob("*.py"))
    for rule in _alerts():
        for metric in set(re.findall(r"\b([a-z_]+)(?=\{|\[|\)|\s|$)", str(rule["expr"]))):
            if not metric.startswith("herald_") or metric in NOT_OURS:
                continue
            base = re.sub(r"_(bucket|count|sum)$", "", metric)
            assert f'"{base}"' in sources, f"{rule['alert']} reads {metric}, which Herald lacks"


def test_promtool_checks_the_scrape_configuration(tmp_path: Path) -> None:
    """compose.yaml's Prometheus configuration, with a stand-in for the api key it mounts."""
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(RULES / name, tmp_path / name)
    (tmp_path / "herald-api-key").write_text("hk_stand_in\n")
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is needed: apt-get install prometheus"
    checked = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
