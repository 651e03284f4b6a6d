"""Alert rules and Prometheus configuration: promtool accepts them, the alerts fire when they should, and the
cluster's PrometheusRule carries exactly the rules the embedded Prometheus loads."""

from __future__ import annotations

import runpy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "knative" / "monitoring"
RULES = MONITORING / "alert-rules.yaml"
PROMTOOL = shutil.which("promtool")


def needs_promtool(test: Any) -> Any:
    """Runs promtool: skipped when it is not installed, a `process` test when it is."""
    skip = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian package prometheus)")
    return pytest.mark.process(skip(test))


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60)


@needs_promtool
def test_promtool_checks_the_alert_rules() -> None:
    result = promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_each_alert_fires_on_the_series_that_should_fire_it() -> None:
    # Unit tests of the rules (input series -> expected alerts with their labels and rendered annotations).
    result = promtool("test", "rules", Path(__file__).with_name("alert_rules_test.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_promtool_unit_test() -> None:
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    tested = {
        case["alertname"]
        for test in yaml.safe_load(Path(__file__).with_name("alert_rules_test.yaml").read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    assert alerts - tested == set()


def test_the_alerts_cover_what_operators_must_be_told() -> None:
    exprs = {rule["alert"]: rule["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for rule in g["rules"]}
    needed = {
        "a service down": "up{",
        "error rate": "coelho_function_requests_total",
        "learning lag": "lag",
        "drift": "coelho_drift_detected_total",
        "checkpoint too old": "checkpoint",
        "dead letters": "dead_lettered",
    }
    for what, needle in needed.items():
        assert any(needle in expr for expr in exprs.values()), f"no alert about {what}"
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_prometheusrule_carries_exactly_the_local_rules() -> None:
    local = yaml.safe_load(RULES.read_text())["groups"]
    docs = [d for d in yaml.safe_load_all((MONITORING / "prometheusrule.yaml").read_text()) if d]
    assert len(docs) == 1 and docs[0]["kind"] == "PrometheusRule"
    assert docs[0]["apiVersion"] == "monitoring.coreos.com/v1"
    assert docs[0]["spec"]["groups"] == local


def test_generated_monitoring_files_are_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    generate = runpy.run_path(str(MONITORING / "generate.py"))  # its main() in this process
    assert generate["main"](["--check"]) == 0, capsys.readouterr().out


def test_the_monitoring_kustomization_lists_every_manifest_and_dashboard() -> None:
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (MONITORING / resource).exists(), resource
    dashboards = {f for gen in kustomization["configMapGenerator"] for f in gen["files"]}
    assert dashboards == {f"dashboards/{p.name}" for p in (MONITORING / "dashboards").glob("*.json")}
    assert kustomization["generatorOptions"]["labels"]["grafana_dashboard"] == "1"
    for doc in yaml.safe_load_all((MONITORING / "podmonitors.yaml").read_text()):
        assert doc["kind"] == "PodMonitor"
        assert doc["spec"]["podMetricsEndpoints"][0]["path"] == "/metrics"


def test_knative_kustomization_includes_monitoring() -> None:
    parent = ROOT / "knative" / "kustomization.yaml"
    assert "monitoring" in [str(r).rstrip("/") for r in yaml.safe_load(parent.read_text()).get("resources", [])]


@needs_promtool
def test_promtool_checks_the_generated_prometheus_config(tmp_path: Path) -> None:
    from coelho import prometheus
    from coelho.settings import Settings

    settings = Settings.load(environ={}).with_free_ports(tmp_path)
    config_path = prometheus.write_config(settings)
    result = promtool("check", "config", config_path)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(config_path.read_text())
    # The embedded Prometheus loads the alert rules, and scrapes every component that exports metrics.
    [rules_file] = config["rule_files"]
    assert yaml.safe_load(Path(rules_file).read_text())["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    assert "rules found" in result.stdout, result.stdout  # promtool also checked the rule file the config loads
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {
        f"coelho-{name}"
        for name in ("learn", "predict", "checkpoint", "router", "producer_tfd", "producer_eta", "producer_ecci")
    } <= jobs
