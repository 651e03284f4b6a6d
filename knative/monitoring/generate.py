"""Generates the cluster's monitoring resources from one source each, so they cannot drift apart.

- prometheusrule.yaml: a PrometheusRule (kube-prometheus-stack) with exactly the groups of alert-rules.yaml, the
  file the embedded Prometheus loads.
- dashboards/*.json: the Grafana dashboards, declared below as panels of PromQL queries; kustomization.yaml turns
  each into a ConfigMap labelled grafana_dashboard=1, which Grafana's sidecar provisions.

Run `.venv/bin/python knative/monitoring/generate.py` after editing alert-rules.yaml or a dashboard below;
`--check` exits 1 when a generated file is stale (tests/observability runs it).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from eventing.domains import DOMAINS  # noqa: E402

RULES = HERE / "alert-rules.yaml"
PROMETHEUS_RULE = HERE / "prometheusrule.yaml"
DASHBOARDS = HERE / "dashboards"
# kube-prometheus-stack's Prometheus selects rules and monitors by its Helm release label by default.
RELEASE_LABEL = {"release": "kube-prometheus-stack"}
NAMESPACE = "coelho"


def prometheus_rule() -> dict[str, Any]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "coelho-alerts",
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/part-of": "coelho-realtime", **RELEASE_LABEL},
        },
        "spec": {"groups": groups},
    }


# --- Grafana dashboards ------------------------------------------------------------------------------------
@dataclass
class Panel:
    title: str
    targets: list[tuple[str, str]]  # (PromQL, legend format)
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat
    width: int = 12
    description: str = ""
    stacked: bool = False


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    rows: list[tuple[str, list[Panel]]]
    tags: list[str] = field(default_factory=lambda: ["coelho"])
    drift_annotations: bool = False


DOMAIN_FILTER = 'domain=~"$domain"'


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    height = 4 if panel.kind == "stat" else 8
    custom: dict[str, Any] = {"lineWidth": 2, "fillOpacity": 10, "showPoints": "never"}
    if panel.stacked:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": height},
        "fieldConfig": {
            "defaults": {"unit": panel.unit, **({"custom": custom} if panel.kind == "timeseries" else {})},
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
        if panel.kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "expr": expr,
                "legendFormat": legend,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
            }
            for i, (expr, legend) in enumerate(panel.targets)
        ],
    }


def dashboard_json(dash: Dashboard) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    next_id = 1
    for row_title, row_panels in dash.rows:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        x = 0
        row_height = 0
        for panel in row_panels:
            if x + panel.width > 24:
                x, y = 0, y + row_height
                row_height = 0
            panels.append(_panel_json(panel, next_id, x, y))
            next_id += 1
            x += panel.width
            row_height = max(row_height, 4 if panel.kind == "stat" else 8)
        y += row_height
    annotations: list[dict[str, Any]] = [
        {
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True,
            "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        }
    ]
    if dash.drift_annotations:
        annotations.append(
            {
                "name": "Drift detected",
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "enable": True,
                "iconColor": "red",
                "expr": "sum by (domain) (increase(coelho_drift_detected_total[1m])) > 0",
                "step": "30s",
                "titleFormat": "Drift in {{domain}}",
                "textFormat": "the {{domain}} model's drift detector fired",
            }
        )
    templating = [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
        },
        {
            "name": "domain",
            "label": "Domain",
            "type": "custom",
            "query": ",".join(DOMAINS),
            "multi": True,
            "includeAll": True,
            "current": {"text": "All", "value": "$__all"},
            "allValue": ".*",
            "options": [],
            "hide": 0,
        },
    ]
    return {
        "uid": dash.uid,
        "title": dash.title,
        "description": dash.description,
        "tags": dash.tags,
        "timezone": "browser",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "annotations": {"list": annotations},
        "templating": {"list": templating},
        "panels": panels,
    }


F = DOMAIN_FILTER


def aggregated(
    title: str,
    metric: str,
    by: str,
    *,
    rate: str = "",
    increase: str = "",
    agg: str = "sum",
    match: str = F,
    **options: Any,
) -> Panel:
    """A panel with one series per value of the labels `by` (comma-separated), named by them: `agg by (by)` of the
    metric's rate or increase over the window given, or of the metric itself (a gauge). `match`: its label
    matchers, the dashboard's domains unless said otherwise."""
    selector = f"{metric}{{{match}}}" if match else metric
    window, fn = (rate, "rate") if rate else (increase, "increase")
    inner = f"{fn}({selector}[{window}])" if window else selector
    legend = " ".join(f"{{{{{label.strip()}}}}}" for label in by.split(","))
    return Panel(title, [(f"{agg} by ({by}) ({inner})", legend)], **options)


PODS = f'namespace="{NAMESPACE}"'
KUBERNETES = Dashboard(
    uid="coelho-kubernetes",
    title="COELHO / Kubernetes resources",
    description="CPU, memory, restarts and replicas of the platform's pods (cAdvisor, kube-state-metrics, Knative).",
    rows=[
        (
            "Pods",
            [
                aggregated(
                    "CPU by pod",
                    "container_cpu_usage_seconds_total",
                    "pod",
                    rate="5m",
                    match=f'{PODS},container!=""',
                    unit="cores",
                ),
                aggregated(
                    "Memory working set by pod",
                    "container_memory_working_set_bytes",
                    "pod",
                    match=f'{PODS},container!=""',
                    unit="bytes",
                ),
                aggregated(
                    "Container restarts (1h)",
                    "kube_pod_container_status_restarts_total",
                    "pod",
                    increase="1h",
                    match=PODS,
                ),
                aggregated(
                    "Available replicas per deployment",
                    "kube_deployment_status_replicas_available",
                    "deployment",
                    match=PODS,
                ),
            ],
        ),
        (
            "Scrape targets",
            [
                aggregated(
                    "Targets up",
                    "up",
                    "job",
                    match='job=~"coelho-(learn|predict|checkpoint|chat|lake|sql|router|producer_.+)"',
                    width=24,
                ),
            ],
        ),
    ],
)

EVENTING = Dashboard(
    uid="coelho-eventing",
    title="COELHO / Kafka and eventing",
    description="Events produced into Kafka, routed by the broker and triggers, retried, dead-lettered; consumer lag.",
    rows=[
        (
            "Producers",
            [
                aggregated(
                    "Events produced per second",
                    "coelho_producer_events_total",
                    "domain",
                    rate="1m",
                    unit="ops",
                    stacked=True,
                ),
                aggregated(
                    "Producer errors per second", "coelho_producer_errors_total", "domain", rate="5m", unit="ops"
                ),
            ],
        ),
        (
            "Broker and triggers",
            [
                aggregated(
                    "Events in per source",
                    "coelho_router_events_in_total",
                    "source",
                    rate="1m",
                    match="",
                    unit="ops",
                ),
                aggregated(
                    "Events delivered per trigger",
                    "coelho_router_events_out_total",
                    "trigger",
                    rate="1m",
                    match="",
                    unit="ops",
                ),
                aggregated(
                    "Retries per trigger", "coelho_router_retries_total", "trigger", rate="5m", match="", unit="ops"
                ),
                aggregated(
                    "Dead-lettered events (5m)", "coelho_router_dead_lettered_total", "trigger", increase="5m", match=""
                ),
                Panel(
                    "Delivery latency p95 per trigger",
                    [
                        (
                            "histogram_quantile(0.95, sum by (le, trigger) (rate(coelho_router_delivery_latency_seconds_bucket[5m])))",
                            "{{trigger}}",
                        )
                    ],
                    unit="s",
                ),
                aggregated(
                    "Events rejected by functions (4xx, dead-lettered)",
                    "coelho_function_requests_total",
                    "function, type",
                    rate="5m",
                    match='code=~"4.."',
                    unit="ops",
                ),
            ],
        ),
        (
            "Lag",
            [
                aggregated(
                    "Consumer lag per consumer group (local router)",
                    "coelho_router_consumer_lag",
                    "consumer",
                    agg="max",
                    match="",
                    description="Computed by the router from what it read and committed (the embedded broker's end offsets are unreliable).",
                ),
                aggregated(
                    "Consumer group lag (Kafka exporter, cluster)",
                    "kafka_consumergroup_lag",
                    "consumergroup, topic",
                    match="",
                    description="Strimzi's Kafka exporter, in a cluster.",
                ),
                aggregated(
                    "Dead-letter topic writes (Kafka exporter, cluster)",
                    "kafka_topic_partition_current_offset",
                    "topic",
                    increase="5m",
                    match='topic="coelho-dead-letters"',
                    description="Events the Broker's dead-letter KafkaSink wrote, in a cluster.",
                ),
                aggregated(
                    "Records per second per topic (Kafka exporter, cluster)",
                    "kafka_topic_partition_current_offset",
                    "topic",
                    rate="1m",
                    match="",
                    unit="ops",
                ),
            ],
        ),
    ],
)

FUNCTIONS = Dashboard(
    uid="coelho-functions",
    title="COELHO / Functions",
    description="learn-one, predict-one, checkpoint, chat and the lake: requests, errors, latency, predictions, lake commits.",
    rows=[
        (
            "Traffic",
            [
                aggregated(
                    "Requests per second by function",
                    "coelho_function_requests_total",
                    "function",
                    rate="1m",
                    match="",
                    unit="reqps",
                ),
                Panel(
                    "Predictions per second by domain",
                    [
                        (
                            'label_replace(sum by (type) (rate(coelho_function_requests_total{function="predict",code="200",'
                            'type=~"com\\\\.coelho\\\\.realtime\\\\.($domain)\\\\.prediction\\\\.requested"}[1m])), '
                            '"domain", "$1", "type", "com\\\\.coelho\\\\.realtime\\\\.([a-z]+)\\\\..*")',
                            "{{domain}}",
                        )
                    ],
                    unit="ops",
                    description="Prediction requests predict-one answered (200), per domain.",
                ),
            ],
        ),
        (
            "Errors",
            [
                Panel(
                    "Error ratio (5xx) by function",
                    [
                        (
                            'sum by (function) (rate(coelho_function_requests_total{code=~"5.."}[5m])) / sum by (function) (rate(coelho_function_requests_total[5m]))',
                            "{{function}}",
                        )
                    ],
                    unit="percentunit",
                ),
                aggregated(
                    "Responses by status code",
                    "coelho_function_requests_total",
                    "function, code",
                    rate="5m",
                    match="",
                    unit="reqps",
                ),
            ],
        ),
        (
            "Latency",
            [
                Panel(
                    "p50 / p95 / p99 latency by function",
                    [
                        (
                            f"histogram_quantile({q}, sum by (le, function) (rate(coelho_function_request_seconds_bucket[5m])))",
                            f"{{{{function}}}} p{int(q * 100)}",
                        )
                        for q in (0.5, 0.95, 0.99)
                    ],
                    unit="s",
                    width=24,
                ),
            ],
        ),
        (
            "Lake",
            [
                aggregated(
                    "Rows written per second by table",
                    "coelho_lake_rows_written_total",
                    "domain, kind",
                    rate="1m",
                    unit="ops",
                    width=8,
                    description="Records and labels committed to the Delta tables (duplicates dropped are not rows).",
                ),
                Panel(
                    "Lag: arrival to commit (p95)",
                    [
                        (
                            f"histogram_quantile(0.95, sum by (le, domain, kind) (rate(coelho_lake_lag_seconds_bucket{{{F}}}[5m])))",
                            "{{domain}} {{kind}}",
                        )
                    ],
                    unit="s",
                    width=8,
                    description="A request is answered once its batch is committed: this is how long the lake makes the stream wait. CoelhoLakeBehind fires above 30 s.",
                ),
                Panel(
                    "Commit duration (p95)",
                    [
                        (
                            f"histogram_quantile(0.95, sum by (le, domain, kind) (rate(coelho_lake_commit_seconds_bucket{{{F}}}[5m])))",
                            "{{domain}} {{kind}}",
                        )
                    ],
                    unit="s",
                    width=8,
                    description="Write a batch's Parquet files and raw snapshot, commit it to the Delta log.",
                ),
                aggregated(
                    "Active files per table",
                    "coelho_lake_table_files",
                    "domain, kind",
                    agg="max",
                    width=8,
                    description="One file per micro-batch until the hourly maintenance compacts them.",
                ),
                aggregated(
                    "Duplicates dropped", "coelho_lake_duplicates_total", "domain, kind", rate="5m", unit="ops", width=8
                ),
                aggregated(
                    "Failed commits",
                    "coelho_lake_commits_total",
                    "domain, kind",
                    rate="5m",
                    match=f'{F},outcome="error"',
                    unit="ops",
                    width=8,
                    description="Their requests were answered 503 and are redelivered by the Broker.",
                ),
            ],
        ),
    ],
)

ML = Dashboard(
    uid="coelho-ml",
    title="COELHO / Models",
    description="Online learning: events learned, the models' progressive-validation metrics, drift, state size, checkpoints.",
    drift_annotations=True,
    rows=[
        (
            "Learning",
            [
                aggregated("Events learned per second", "coelho_events_learned_total", "domain", rate="1m", unit="ops"),
                Panel(
                    "Model metrics (progressive validation)",
                    [(f"coelho_model_metric{{{F}}}", "{{domain}} {{model}} v{{model_version}} {{metric}}")],
                    description="Test-then-train: every event is scored before it is learned. model_version: the MLflow version of the last checkpoint.",
                ),
            ],
        ),
        (
            "Drift",
            [
                aggregated(
                    "Drift detections (1h)",
                    "coelho_drift_detected_total",
                    "domain",
                    increase="1h",
                    kind="stat",
                    width=12,
                ),
                aggregated(
                    "Drift detections over time", "coelho_drift_detected_total", "domain", increase="5m", width=12
                ),
                aggregated(
                    "Duplicate deliveries dropped",
                    "coelho_events_duplicate_total",
                    "domain",
                    rate="5m",
                    unit="ops",
                    width=12,
                    description="At-least-once delivery: redeliveries learn-one recognised and did not learn twice.",
                ),
                aggregated(
                    "Model snapshots written", "coelho_model_snapshots_total", "domain", increase="15m", width=12
                ),
            ],
        ),
        (
            "State and checkpoints",
            [
                aggregated("Model state size", "coelho_model_state_bytes", "domain", unit="bytes", width=6),
                Panel(
                    "Time since last checkpoint",
                    [
                        (
                            f"time() - max by (domain) (coelho_checkpoint_last_success_timestamp_seconds{{{F}}})",
                            "{{domain}}",
                        )
                    ],
                    unit="s",
                    width=6,
                    description="The alert CoelhoCheckpointTooOld fires above 2 hours.",
                ),
                Panel(
                    "Checkpoint duration (p95, 1h)",
                    [
                        (
                            f"histogram_quantile(0.95, sum by (domain, le) (rate(coelho_checkpoint_duration_seconds_bucket{{{F}}}[1h])))",
                            "{{domain}}",
                        )
                    ],
                    unit="s",
                    width=6,
                    description="Catch up, pickle, MLflow run and registered version of one model.",
                ),
                aggregated(
                    "Registered model version (last checkpoint)",
                    "coelho_checkpoint_model_version",
                    "domain, model",
                    agg="max",
                    width=6,
                ),
            ],
        ),
    ],
)

ALL_DASHBOARDS = (KUBERNETES, EVENTING, FUNCTIONS, ML)


def rendered() -> dict[Path, str]:
    """Every generated file and its content."""
    files = {
        PROMETHEUS_RULE: "# Generated by knative/monitoring/generate.py from alert-rules.yaml: edit that file, not this one.\n"
        + yaml.safe_dump(prometheus_rule(), sort_keys=False, width=200),
    }
    for dash in ALL_DASHBOARDS:
        files[DASHBOARDS / f"{dash.uid}.json"] = json.dumps(dashboard_json(dash), indent=2) + "\n"
    return files


def main(argv: list[str]) -> int:
    stale = [path for path, text in rendered().items() if not path.exists() or path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"stale: {path.relative_to(HERE.parent.parent)} (run knative/monitoring/generate.py)")
        return 1 if stale else 0
    DASHBOARDS.mkdir(exist_ok=True)
    for path, text in rendered().items():
        path.write_text(text)
    print(f"wrote {len(rendered())} files ({len(stale)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
