"""Against the running platform: every component (the functions, the router, the producers and the dashboard)
exports its metrics on /metrics, Prometheus scrapes each one as up and has loaded the alert rules, and every
coelho_* metric the alerts and dashboards query is really served."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from coelho.services import SERVICES
from tests.waiting import until

from .conftest import ROOT, prometheus_url, promql_metric_names

pytestmark = pytest.mark.stack

# Components whose /metrics the platform serves, and the metric families each must export (names as exposed).
COMPONENTS = [
    "learn",
    "predict",
    "checkpoint",
    "chat",
    "lake",
    "router",
    "producer_tfd",
    "producer_eta",
    "producer_ecci",
    "dashboard",  # its own registry (ui/metrics.py), on its HTTP port; Prometheus has a job for it too
]
FUNCTION_METRICS = {"coelho_function_requests_total", "coelho_function_request_seconds"}
EXPECTED: dict[str, set[str]] = {
    "learn": FUNCTION_METRICS | {"coelho_drift_detected_total", "coelho_model_events_learned"},
    "predict": FUNCTION_METRICS,
    "checkpoint": FUNCTION_METRICS,
    "chat": FUNCTION_METRICS | {"coelho_chat_requests_total"},
    "lake": FUNCTION_METRICS
    | {"coelho_lake_rows_written_total", "coelho_lake_lag_seconds", "coelho_lake_oldest_pending_seconds"},
    "router": {
        "coelho_router_events_in_total",
        "coelho_router_events_out_total",
        "coelho_router_retries_total",
        "coelho_router_dead_lettered_total",
        "coelho_router_delivery_latency_seconds",
        "coelho_router_consumer_lag",
    },
    **{
        f"producer_{d}": {"coelho_producer_events_total", "coelho_producer_errors_total"}
        for d in ("tfd", "eta", "ecci")
    },
    "dashboard": {
        "coelho_dashboard_sessions",
        "coelho_dashboard_page_loads_total",
        "coelho_dashboard_prediction_clicks_total",
        "coelho_dashboard_callback_seconds",
    },
}


def exposed_names(text: str) -> set[str]:
    """Metric names as a query uses them (counters with _total), HELP/TYPE of metrics without samples included."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name + "_total" if family.type == "counter" else family.name)
        names.update(sample.name for sample in family.samples)
    return names


@pytest.fixture(scope="module")
def stack(platform: Any) -> Any:
    # MLflow first: learn-one restores models from the registry when it starts and is not ready before MLflow is
    # (MLflow can take over a minute to start on a loaded machine).
    platform.start(["mlflow"])
    platform.start(["prometheus", *COMPONENTS], producers=True)
    return platform


def started(stack: Any) -> list[str]:
    return [name for name in COMPONENTS if stack.running(name)]


def metrics_url(stack: Any, name: str) -> str:
    svc = next(s for s in SERVICES if s.name == name)
    return f"http://{stack.settings.host}:{stack.settings.ports[svc.metrics_port or svc.port]}{svc.metrics_path}"


def test_the_core_components_run(stack: Any) -> None:
    # The functions, the router, the producers and the dashboard are the platform: each must be running for this
    # suite to mean anything.
    assert set(started(stack)) == set(COMPONENTS)


def test_every_component_serves_its_metrics(stack: Any) -> None:
    missing = {}
    for name in started(stack):
        reply = requests.get(metrics_url(stack, name), timeout=5)
        assert reply.status_code == 200, name
        lacking = EXPECTED[name] - exposed_names(reply.text)
        if lacking:
            missing[name] = sorted(lacking)
    assert not missing, missing


def test_every_queried_platform_metric_is_served(stack: Any) -> None:
    served: set[str] = set()
    for name in started(stack):
        served |= exposed_names(requests.get(metrics_url(stack, name), timeout=5).text)
    queried: dict[str, set[str]] = {}
    monitoring = ROOT / "knative" / "monitoring"
    for group in yaml.safe_load((monitoring / "alert-rules.yaml").read_text())["groups"]:
        for rule in group["rules"]:
            queried[rule["alert"]] = promql_metric_names(rule["expr"])
    for path in (monitoring / "dashboards").glob("*.json"):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                queried[f"{path.stem}: {panel['title']}"] = promql_metric_names(target["expr"])

    def base(name: str) -> str:  # histogram series -> the histogram
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name.removesuffix(suffix) in served:
                return name.removesuffix(suffix)
        return name

    missing = {
        where: sorted(n for n in names if n.startswith("coelho_") and base(n) not in served)
        for where, names in queried.items()
    }
    assert not {w: m for w, m in missing.items() if m}, missing


def test_prometheus_scrapes_every_component_as_up(stack: Any) -> None:
    url = prometheus_url(stack)
    wanted = {f"coelho-{name}" for name in started(stack)}

    def health() -> dict[str, str]:
        targets = requests.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return {t["labels"]["job"]: t["health"] for t in targets}

    until(lambda: all(health().get(job) == "up" for job in wanted), 60, f"targets {sorted(wanted)} up")
    # ... and the samples are queryable: up == 1 for every component.
    result = requests.get(f"{url}/api/v1/query", params={"query": 'up{job=~"coelho-.+"} == 1'}, timeout=5).json()
    assert wanted <= {r["metric"]["job"] for r in result["data"]["result"]}


def test_prometheus_evaluates_the_alert_rules(stack: Any) -> None:
    url = prometheus_url(stack)
    local = yaml.safe_load((ROOT / "knative" / "monitoring" / "alert-rules.yaml").read_text())["groups"]

    def evaluated() -> list[dict[str, Any]]:
        groups = requests.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return (
            rules
            if rules and all(r.get("lastEvaluation", "").startswith("2") and r["health"] != "unknown" for r in rules)
            else []
        )

    rules = until(evaluated, 30, "rules evaluated")
    assert {r["name"] for r in rules} == {r["alert"] for g in local for r in g["rules"]}
    assert all(r["health"] == "ok" for r in rules), [
        (r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"
    ]
    # No service-down alert for a running component (one may still be resolving if Prometheus saw it before it
    # was started: the runtime's scrape config lists every service, started or not).
    running = {f"coelho-{name}" for name in started(stack)}

    def down_alerts() -> list[dict[str, Any]]:
        alerts = requests.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "CoelhoServiceDown" and a["labels"]["job"] in running]

    deadline = time.monotonic() + 30
    while down_alerts() and time.monotonic() < deadline:
        time.sleep(1)
    assert not down_alerts(), down_alerts()
