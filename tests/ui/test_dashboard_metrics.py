"""The dashboard's own metrics: what a page load, a Predict click and a callback record."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ui.metrics import PAGE_LOADS, PREDICTION_CLICKS, exposition, timed


def sample(name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(exposition().decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


def test_page_loads_clicks_and_callback_times_are_exported() -> None:
    before = sample("coelho_dashboard_page_loads_total", endpoint="/tfd")
    PAGE_LOADS.labels("/tfd").inc()
    assert sample("coelho_dashboard_page_loads_total", endpoint="/tfd") == before + 1
    clicks = sample("coelho_dashboard_prediction_clicks_total", domain="tfd", outcome="invalid")
    PREDICTION_CLICKS.labels("tfd", "invalid").inc()
    assert sample("coelho_dashboard_prediction_clicks_total", domain="tfd", outcome="invalid") == clicks + 1
    count = sample("coelho_dashboard_callback_seconds_count", operation="unit")
    with timed("unit"):
        pass
    assert sample("coelho_dashboard_callback_seconds_count", operation="unit") == count + 1
    assert "coelho_dashboard_sessions" in exposition().decode()
