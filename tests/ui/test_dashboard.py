"""The dashboard in a real browser against the real platform: each page loads, randomizes, predicts, and shows
what the models learned; training and producer switches act on the platform; a stopped service gets a banner.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from coelho.settings import PROJECT_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.stack]

SCREENSHOTS = PROJECT_ROOT / "test-artifacts" / "screenshots"
TIMINGS = PROJECT_ROOT / "test-artifacts" / "dashboard-timings.jsonl"
INTERACTIVE = "() => window.Bokeh !== undefined && Bokeh.documents.length > 0 && Bokeh.documents[0].is_idle"


def record_timing(name: str, seconds: float) -> None:
    """Log a timing and append it to test-artifacts/dashboard-timings.jsonl (no assertion on it)."""
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    with TIMINGS.open("a") as fh:
        fh.write(json.dumps({"name": name, "seconds": round(seconds, 3), "at": time.time()}) + "\n")
    print(f"timing {name}: {seconds:.3f} s")


def screenshot(page: Any, name: str, full_height: int = 2000) -> Path:
    """A screenshot of the whole page (the template scrolls inside its main area: grow the viewport)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.set_viewport_size({"width": 1500, "height": full_height})
    page.wait_for_timeout(600)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1500, "height": 1000})
    return path


def open_page(page: Any, platform: Any, route: str, ready_text: str) -> float:
    """Open a page and wait until it is interactive (rendered and its websocket session idle); returns seconds."""
    start = time.perf_counter()
    page.goto(platform.settings.url("dashboard") + route)
    page.get_by_text(ready_text).first.wait_for()
    page.wait_for_function(INTERACTIVE)
    seconds = time.perf_counter() - start
    record_timing(f"page_interactive{route.replace('/', '_') or '_home'}", seconds)
    return seconds


def predict(page: Any, result_text: str, name: str) -> float:
    start = time.perf_counter()
    page.get_by_role("button", name="Predict", exact=True).click()
    page.get_by_text(result_text).first.wait_for()
    seconds = time.perf_counter() - start
    record_timing(f"click_to_prediction_{name}", seconds)
    return seconds


def wait_events_learned(page: Any) -> None:
    """The model header shows a live model with events learned (the poller reads it from Redis)."""
    page.locator(".events-learned").first.wait_for()


def wait_changed(locator: Any, before: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while locator.input_value() == before:
        assert time.monotonic() < deadline, f"the value stayed {before!r}"
        time.sleep(0.1)


DEEP_TEXT = """() => {
  const out = [];
  const walk = (node) => {
    if (node.shadowRoot) walk(node.shadowRoot);
    for (const child of node.childNodes) {
      if (child.nodeType === Node.TEXT_NODE) out.push(child.textContent); else walk(child);
    }
  };
  walk(document.body);
  return out.join(" ");
}"""


def page_text(page: Any) -> str:
    """All text on the page, inside Bokeh's shadow roots too (inner_text does not enter them)."""
    return str(page.evaluate(DEEP_TEXT))


def no_traceback(page: Any) -> None:
    text = page_text(page)
    assert "Randomize All Fields" in text or "Services" in text, "page text not readable"
    assert "Traceback" not in text and 'File "' not in text


def service_banner(page: Any) -> Any:
    """The visible "service down" banner. It reads "X is not responding" or "X, Y are not responding": when Redis
    stops, the functions whose readiness needs Redis are soon reported too (matching "is ..." made this test flaky)."""
    return page.locator("[role=alert] >> visible=true").filter(has_text="not responding").first


def field_input(page: Any, path: str) -> Any:
    return page.locator(f".field-{path.replace('.', '-')} input").first


def test_home_shows_services_and_domains(dashboard: Any, page: Any) -> None:
    open_page(page, dashboard, "/", "Real-time machine learning")
    page.locator(".service-status").wait_for()
    page.get_by_text("predict-one function").first.wait_for()
    for title in ("Transaction Fraud Detection", "Estimated Time of Arrival", "E-Commerce Customer Interactions"):
        page.get_by_text(title).first.wait_for()
    page.wait_for_timeout(2500)  # two polls: events/s from the producers
    screenshot(page, "home")
    no_traceback(page)


def test_health_api_reports_what_the_banner_sees(dashboard: Any) -> None:
    deadline = time.monotonic() + 30
    while True:
        body = requests.get(dashboard.settings.url("dashboard") + "/api/health", timeout=10).json()
        if body["checked_at"] > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert body["redis_up"] is True
    names = {s["name"]: s for s in body["services"]}
    assert names["redis"]["healthy"] and names["predict"]["healthy"], body
    assert "redis" not in body["down"] and "predict" not in body["down"], body


def test_fraud_page_randomize_predict_and_report(dashboard: Any, page: Any) -> None:
    open_page(page, dashboard, "/tfd", "Randomize All Fields")
    wait_events_learned(page)
    page.get_by_text("Last checkpoint").first.wait_for()
    amount = field_input(page, "amount")
    before = amount.input_value()
    page.get_by_role("button", name="Randomize All Fields").click()
    wait_changed(amount, before)
    predict(page, "Not fraud", "tfd")
    result = page.locator(".fraud-result").inner_text()
    assert "%" in result and ("LOW" in result or "MEDIUM" in result or "HIGH" in result)
    page.get_by_text("answered in").first.wait_for()
    # every model of the domain is listed; Predict asks the one chosen in the Model select (the first by default)
    model = page.locator(".model-name").first.inner_text().strip()
    assert model in page.locator(".models-table").first.inner_text()
    assert f"model {model}" in page.locator(".prediction-meta").first.inner_text()
    screenshot(page, "tfd-predict")

    # an out-of-range value shows the domain's validation message beside the field
    amount.fill("-5")
    amount.press("Enter")
    page.get_by_text("below the minimum").first.wait_for()
    page.get_by_role("button", name="Predict", exact=True).click()
    page.get_by_text("need").first.wait_for()
    amount.fill("42.5")
    amount.press("Enter")
    page.get_by_text("below the minimum").first.wait_for(state="hidden")

    page.get_by_text("Confusion matrix & report").first.click()
    page.locator(".classification-report").wait_for()
    report = page.locator(".classification-report").inner_text()
    assert "fraud" in report and "legit" in report
    screenshot(page, "tfd-confusion-matrix")
    page.get_by_text("Metric charts").first.click()
    page.get_by_text("All metrics (progressive validation)").wait_for()
    screenshot(page, "tfd-metric-charts")
    no_traceback(page)
    assert not page.errors


def test_training_switch_pauses_and_resumes_learning(dashboard: Any, page: Any) -> None:
    client = redis.Redis.from_url(dashboard.settings.redis_url)
    open_page(page, dashboard, "/tfd", "Randomize All Fields")
    page.get_by_text("LEARNING").first.wait_for()
    switch = page.locator(".training-switch").first
    switch.click()
    page.get_by_text("PAUSED").first.wait_for()
    deadline = time.monotonic() + 30
    while client.get("coelho:tfd:paused_at") is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.get("coelho:tfd:paused_at") is not None, "learn-one was not paused"
    switch.click()
    page.get_by_text("LEARNING").first.wait_for()
    deadline = time.monotonic() + 30
    while client.get("coelho:tfd:paused_at") is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.get("coelho:tfd:paused_at") is None, "learn-one was not resumed"


def test_producer_switch_sets_the_redis_control(dashboard: Any, page: Any) -> None:
    client = redis.Redis.from_url(dashboard.settings.redis_url)
    open_page(page, dashboard, "/eta", "Randomize All Fields")
    page.get_by_text("STREAMING").first.wait_for()
    page.locator(".producer-switch").first.click()
    page.get_by_text("STOPPED").first.wait_for()
    assert client.get("coelho:producer:eta:enabled") == b"0"
    page.locator(".producer-switch").first.click()
    page.get_by_text("STREAMING").first.wait_for()
    assert client.get("coelho:producer:eta:enabled") == b"1"


def test_eta_page_route_prediction_and_stale_clearing(dashboard: Any, page: Any) -> None:
    open_page(page, dashboard, "/eta", "Random coordinates")
    wait_events_learned(page)
    lat = field_input(page, "origin.lat")
    before = lat.input_value()
    page.get_by_role("button", name="Random coordinates").click()
    wait_changed(lat, before)
    predict(page, "ETA (minutes)", "eta")
    result = page.locator(".eta-result").inner_text()
    assert " s" in result and "min" in result
    assert "km" in page.locator(".trip-distance").inner_text()
    screenshot(page, "eta-predict")
    lat.fill(str(float(lat.input_value() or 29.7) + 0.01))
    lat.press("Enter")
    page.get_by_text("Inputs changed").first.wait_for()
    page.locator(".eta-result").wait_for(state="detached", timeout=15_000)  # the stale result is cleared
    no_traceback(page)
    assert not page.errors


def test_ecci_page_cluster_and_analytics(dashboard: Any, page: Any) -> None:
    open_page(page, dashboard, "/ecci", "Randomize All Fields")
    wait_events_learned(page)
    page.get_by_role("button", name="Randomize All Fields").click()
    predict(page, "Predicted segment", "ecci")
    assert "Cluster" in page.locator(".cluster-result").inner_text()
    page.get_by_text("Cluster behaviour").first.wait_for()
    screenshot(page, "ecci-predict")
    page.get_by_text("Cluster Analytics").first.click()
    page.get_by_text("Samples per cluster").first.wait_for()
    page.wait_for_timeout(1500)
    screenshot(page, "ecci-cluster-analytics")
    no_traceback(page)
    assert not page.errors


def test_banner_names_a_stopped_predict_function(dashboard: Any, page: Any) -> None:
    open_page(page, dashboard, "/tfd", "Randomize All Fields")
    dashboard.kill("predict")
    try:
        service_banner(page).wait_for(timeout=120_000)
        assert "predict-one function" in page_text(page)
        page.get_by_role("button", name="Predict", exact=True).click()
        page.get_by_text("not reachable").first.wait_for()
        screenshot(page, "banner-predict-down")
        no_traceback(page)
    finally:
        dashboard.restart("predict")
    service_banner(page).wait_for(state="hidden", timeout=120_000)
    predict(page, "Not fraud", "tfd_after_restart")


def test_banner_names_a_stopped_redis(dashboard: Any, page: Any) -> None:
    open_page(page, dashboard, "/ecci", "Randomize All Fields")
    dashboard.kill("redis")
    try:
        assert not dashboard.running("redis")
        try:
            service_banner(page).wait_for(timeout=120_000)
        except Exception as err:
            os.kill(dashboard.pid("dashboard"), signal.SIGUSR1)  # thread stacks into the dashboard's log
            seen = requests.get(dashboard.settings.url("dashboard") + "/api/health", timeout=10).text
            screenshot(page, "banner-redis-missing")
            raise AssertionError(
                f"no banner; the dashboard's view: {seen}; the page: {page_text(page)[:1500]}"
            ) from err
        # The functions whose readiness needs Redis may be reported a poll before Redis itself: wait for its name.
        deadline = time.monotonic() + 60
        while "Redis" not in page_text(page):
            assert time.monotonic() < deadline, f"the banner never named Redis: {page_text(page)[:1500]}"
            page.wait_for_timeout(500)
        screenshot(page, "banner-redis-down")
        no_traceback(page)
    finally:
        dashboard.restart("redis")
    service_banner(page).wait_for(state="hidden", timeout=120_000)


def test_observability_page_is_mounted(dashboard: Any, page: Any) -> None:
    from ui.app import PAGES

    assert any(p.route == "/observability" for p in PAGES)
    open_page(page, dashboard, "/observability", "Observability")
    page.wait_for_timeout(2000)
    screenshot(page, "observability")
    no_traceback(page)


# --- the dashboard's features, one by one -----------------------------------------------------------------------------
BOKEH_TEXTS = """() => {
  const out = [];
  for (const doc of Bokeh.documents) for (const m of doc.all_models) if (typeof m.text === "string") out.push(m.text);
  return out;
}"""


def bokeh_texts(page: Any) -> list[str]:
    """Texts of the page's Bokeh models (chart titles are drawn on a canvas: not in the DOM)."""
    return [str(t) for t in page.evaluate(BOKEH_TEXTS)]


def test_services_menu_links_the_running_services(dashboard: Any, page: Any) -> None:
    from ui.layout import service_links

    open_page(page, dashboard, "/", "Real-time machine learning")
    page.get_by_text("Services ▾").first.click()
    links = service_links(dashboard.settings)
    assert {label for label, _, _ in links} >= {
        "MLflow",
        "Prometheus",
        "S3 (SeaweedFS)",
        "Broker ingress",
        "predict-one health",
    }
    for label, url, _ in links:
        link = page.locator("nav .menu a", has_text=label).first
        link.wait_for()
        assert link.get_attribute("href") == url, label
    # the links lead to live services (the ones every page depends on)
    for label in ("MLflow", "predict-one health", "learn-one health", "Router metrics"):
        url = next(u for lbl, u, _ in links if lbl == label)
        assert requests.get(url, timeout=10).status_code == 200, f"{label}: {url}"
    screenshot(page, "home-services-menu")


def test_home_shows_events_per_second_learned_per_domain(dashboard: Any, page: Any) -> None:
    open_page(page, dashboard, "/", "Real-time machine learning")
    rates = page.locator(".events-per-s")
    rates.first.wait_for()
    deadline = time.monotonic() + 30
    while True:  # the producers stream at 5 events/s each: the home page's rates follow within a few polls
        values = [float(t.replace(",", "")) for t in rates.all_inner_texts()]
        if len(values) == 3 and any(v > 0 for v in values):
            break
        assert time.monotonic() < deadline, f"events/s learned stayed {values}"
        page.wait_for_timeout(500)


def test_metric_cards_refresh_live_and_explain_themselves(dashboard: Any, page: Any) -> None:
    from eventing.domains import get_domain

    open_page(page, dashboard, "/tfd", "Randomize All Fields")
    wait_events_learned(page)
    learned = page.locator(".events-learned").first
    before = learned.inner_text()
    deadline = time.monotonic() + 30
    while learned.inner_text() == before:  # the producers keep the model learning: the header counts on
        assert time.monotonic() < deadline, f"events learned stayed {before} on an open page"
        page.wait_for_timeout(300)
    card = page.locator(".metric-card[data-metric='ROCAUC']").first
    assert card.locator(".value").inner_text().strip() not in ("", "—")
    popover = card.locator(".popover")
    assert not popover.is_visible()
    card.locator(".info").hover()
    popover.wait_for(state="visible")
    assert popover.inner_text().strip() == get_domain("tfd").metric_help["ROCAUC"]
    screenshot(page, "tfd-metric-popover", full_height=1000)


def test_producer_rate_is_set_from_the_page(dashboard: Any, page: Any) -> None:
    client = redis.Redis.from_url(dashboard.settings.redis_url)
    open_page(page, dashboard, "/eta", "Randomize All Fields")
    rate = page.locator(".producer-rate input").first
    rate.fill("7.5")
    rate.press("Enter")
    deadline = time.monotonic() + 30
    while client.get("coelho:producer:eta:rate") not in (b"7.5",):
        assert time.monotonic() < deadline, f"rate in Redis: {client.get('coelho:producer:eta:rate')!r}"
        time.sleep(0.2)
    client.set("coelho:producer:eta:rate", "5")  # gentle again for the other tests


def test_ecci_cluster_behaviour_and_feature_across_clusters(dashboard: Any, page: Any) -> None:
    open_page(page, dashboard, "/ecci", "Randomize All Fields")
    wait_events_learned(page)
    predict(page, "Predicted segment", "ecci_behaviour")
    cluster = page.locator(".cluster-result").inner_text()
    note = page.get_by_text("values of event type in cluster").first
    try:  # the default feature (event type) is categorical: its top values in the predicted cluster
        note.wait_for(timeout=20_000)
    except Exception as err:
        raise AssertionError(f"no cluster behaviour for {cluster!r}: {page_text(page)[-1500:]}") from err
    assert note.inner_text().split()[-1] in cluster
    page.locator(".behaviour-feature select").first.select_option(label="price")
    page.get_by_text(re.compile(r"^mean -?[\d,.]+ ± [\d,.]+$")).first.wait_for()  # numeric: min / mean / max, spread
    bars = page.locator(".html-bars").first.evaluate(
        DEEP_TEXT.replace("() =>", "(root) =>").replace("walk(document.body)", "walk(root)")
    )
    assert "min" in bars and "mean" in bars and "max" in bars, bars
    screenshot(page, "ecci-cluster-behaviour-price")

    page.get_by_text("Cluster Analytics").first.click()
    page.get_by_text("Samples per cluster").first.wait_for()
    page.locator(".analytics-feature select").first.select_option(label="device type")
    deadline = time.monotonic() + 60
    while not any("Device type: share of each cluster's events" in t for t in bokeh_texts(page)):
        assert time.monotonic() < deadline, f"no distribution chart for device type: {bokeh_texts(page)}"
        page.wait_for_timeout(300)
    page.locator(".analytics-feature select").first.select_option(label="time on page seconds")
    deadline = time.monotonic() + 60
    while not any("Mean time on page seconds per cluster" in t for t in bokeh_texts(page)):
        assert time.monotonic() < deadline, f"no per-cluster means for time on page: {bokeh_texts(page)}"
        page.wait_for_timeout(300)
    screenshot(page, "ecci-feature-across-clusters")
    no_traceback(page)
    assert not page.errors
