"""Every metric an alert, a Grafana panel or the Observability page queries is one the code exports (or one a
named cluster exporter provides), and the platform's metric names follow Prometheus conventions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from ui.observability_charts import CHARTS

from .conftest import ROOT, exported_metrics, exported_sample_names, promql_metric_names

MONITORING = ROOT / "knative" / "monitoring"

# Metrics the cluster's own exporters provide (kube-prometheus-stack and Strimzi), queried by the Kubernetes and
# Kafka dashboards. Anything else must be exported by this project's code.
EXTERNAL = {
    "up": "Prometheus itself, for every target",
    "container_cpu_usage_seconds_total": "cAdvisor (kubelet), kube-prometheus-stack",
    "container_memory_working_set_bytes": "cAdvisor (kubelet), kube-prometheus-stack",
    "kube_pod_container_status_restarts_total": "kube-state-metrics",
    "kube_deployment_status_replicas_available": "kube-state-metrics",
    "kafka_consumergroup_lag": "Strimzi Kafka exporter",
    "kafka_topic_partition_current_offset": "Strimzi Kafka exporter",
}

# Label names whose values are bounded by the platform's configuration (domains, models, functions, triggers,
# event types, status codes, ...). An entity key or event id as a label would create a series per entity.
BOUNDED_LABELS = {
    "domain",
    "model",
    "model_version",
    "metric",
    "function",
    "type",
    "code",
    "trigger",
    "source",
    "consumer",
    "outcome",
    "tool",
    "kind",
    "le",
    "quantile",
    "topic",
    "state",
    "reason",
    "component",
    "status",
    "service",
    "alias",
    "mode",
    "cluster",
    "partition",
    "stage",
    "operation",
    "method",
    "endpoint",
    "result",
}
UNBOUNDED_LABELS = {
    "id",
    "event_id",
    "user_id",
    "customer_id",
    "trip_id",
    "transaction_id",
    "session_id",
    "key",
    "partitionkey",
}


def queried() -> dict[str, str]:
    """Every PromQL expression the monitoring queries, keyed by where it is used."""
    exprs: dict[str, str] = {}
    for group in yaml.safe_load((MONITORING / "alert-rules.yaml").read_text())["groups"]:
        for rule in group["rules"]:
            exprs[f"alert {rule['alert']}"] = rule["expr"]
    for path in sorted((MONITORING / "dashboards").glob("*.json")):
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                exprs[f"{path.name}: {panel['title']} ({target['refId']})"] = target["expr"]
        for annotation in dash["annotations"]["list"]:
            if "expr" in annotation:
                exprs[f"{path.name}: annotation {annotation['name']}"] = annotation["expr"]
    for chart in CHARTS:
        for query in chart.queries:
            exprs[f"Observability page: {chart.title} / {query.label}"] = query.promql()
    return exprs


def test_the_scanner_finds_metrics_in_each_part_of_the_platform() -> None:
    names = {m.name for m in exported_metrics()}
    assert "coelho_function_requests_total" in names  # the function middleware
    assert any(n.startswith("coelho_router_") for n in names)  # the router's own registry
    assert "coelho_drift_detected_total" in names  # learn-one's drift detector


def test_every_queried_metric_is_exported() -> None:
    exported = exported_sample_names() | set(EXTERNAL)
    missing = {
        where: sorted(promql_metric_names(expr) - exported)
        for where, expr in queried().items()
        if promql_metric_names(expr) - exported
    }
    assert not missing, "queried but exported by no code:\n" + "\n".join(f"  {w}: {m}" for w, m in missing.items())


def test_every_exported_metric_is_in_the_metrics_table_of_the_docs() -> None:
    text = (ROOT / "docs" / "observability.md").read_text()
    table = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(coelho_[a-z0-9_]+)`", table))
    missing = sorted(
        {
            m.name
            for m in exported_metrics()
            if not {m.name, m.name.removesuffix("_total"), f"{m.name}_total"} & documented
        }
    )
    assert not missing, f"exported but not in the Metrics table of docs/observability.md: {missing}"


def test_every_dashboard_panel_queries_something() -> None:
    for path in sorted((MONITORING / "dashboards").glob("*.json")):
        dash = json.loads(path.read_text())
        assert dash["uid"] and dash["title"].startswith("COELHO")
        panels = [p for p in dash["panels"] if p["type"] != "row"]
        assert panels, path.name
        for panel in panels:
            assert panel["targets"] and all(promql_metric_names(t["expr"]) for t in panel["targets"]), panel["title"]
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"


def test_the_dashboards_cover_kubernetes_eventing_functions_and_models() -> None:
    text = {
        p.stem: " ".join(t["expr"] for panel in json.loads(p.read_text())["panels"] for t in panel.get("targets", []))
        for p in (MONITORING / "dashboards").glob("*.json")
    }
    assert "kube_" in text["coelho-kubernetes"] and "container_" in text["coelho-kubernetes"]
    assert "dead_lettered" in text["coelho-eventing"] and "lag" in text["coelho-eventing"]
    assert "coelho_function_request" in text["coelho-functions"] and 'function="predict"' in text["coelho-functions"]
    assert "coelho_drift_detected_total" in text["coelho-ml"] and "learned" in text["coelho-ml"]


@pytest.mark.parametrize("metric", exported_metrics(), ids=lambda m: m.name)
def test_metric_names_follow_prometheus_conventions(metric) -> None:  # type: ignore[no-untyped-def]
    name = metric.name
    assert re.fullmatch(r"coelho_[a-z0-9_]+", name), (
        f"{metric.where}: {name} lacks the coelho_ prefix or is not snake_case"
    )
    if metric.kind != "Counter":  # prometheus_client exposes a counter as <name>_total whether or not it is written
        assert not name.endswith("_total"), (
            f"{metric.where}: {metric.kind.lower()} {name} ends in _total (counters only)"
        )
    for bad_unit in ("_milliseconds", "_ms", "_millis", "_kb", "_mb", "_minutes", "_hours", "_percent"):
        assert bad_unit not in name, f"{metric.where}: {name}: use base units (seconds, bytes, ratio)"
    if metric.kind in ("Histogram", "Summary") and any(w in name for w in ("latency", "duration", "time")):
        assert name.endswith("_seconds"), f"{metric.where}: {name} measures time: end it in _seconds"
    unbounded = set(metric.labels) & UNBOUNDED_LABELS
    assert not unbounded, f"{metric.where}: {name} has unbounded labels {unbounded}"
    unknown = set(metric.labels) - BOUNDED_LABELS
    assert not unknown, (
        f"{metric.where}: {name} has labels {unknown}: add them to BOUNDED_LABELS if their values are bounded"
    )


def test_promql_name_extraction() -> None:
    assert promql_metric_names('histogram_quantile(0.95, sum by (le, trigger) (rate(x_bucket{a="b"}[5m])))') == {
        "x_bucket"
    }
    assert promql_metric_names("time() - max by (domain) (ts_seconds)") == {"ts_seconds"}
    assert promql_metric_names('up{job=~"coelho-(a|b)"} == 0') == {"up"}
    assert promql_metric_names('a_total{domain=~"$domain"} unless on(domain) b > 0') == {"a_total", "b"}


@pytest.mark.process  # promtool, when installed
def test_every_dashboard_and_page_query_is_valid_promql(tmp_path: Path) -> None:
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    # promtool parses expressions through a rule file: one recording rule per query (Grafana's $domain -> .*).
    exprs = {
        where: expr.replace("$domain", ".*") for where, expr in queried().items() if not where.startswith("alert ")
    }
    rules = {
        "groups": [
            {
                "name": "queries",
                "rules": [{"record": f"coelho:query:{i}", "expr": e} for i, e in enumerate(exprs.values())],
            }
        ]
    }
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr + "\n".join(exprs)
