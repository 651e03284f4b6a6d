"""A drift injected by a producer (--drift-at) is detected by learn-one, counted (metric, alert) and visible
(Redis drift markers, the Observability page in a real browser, with a screenshot)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from coelho.settings import PROJECT_ROOT
from ui.observability import DRIFT, ObservabilityData, parse_metrics

pytestmark = pytest.mark.stack

# eta: --drift-at switches the traffic regime (+25% daytime congestion, an earlier evening peak); after it the
# model's absolute error roughly doubles until it adapts. NB: learn-one's ADWIN on the raw absolute error also
# fires on the undrifted stream every ~300-600 events (hour-of-day regimes, convergence; measured in
# docs/adr/0051-drift-detection-observability.md), so this test shows the path detect -> count -> alert -> page
# for a detection after the injected change; it cannot prove that detection was caused by it.
DOMAIN = "eta"
SEED = 3
DRIFT_AT = 1500
COUNT = 2300
SCREENSHOTS = PROJECT_ROOT / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]


def drift_count(learn_url: str) -> float:
    samples = parse_metrics(requests.get(f"{learn_url}/metrics", timeout=5).text)
    return sum(v for (name, labels), v in samples.items() if name == DRIFT and dict(labels).get("domain") == DOMAIN)


def markers(client: redis.Redis) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for key in client.scan_iter(match=f"coelho:{DOMAIN}:model:*:drift"):
        found += [json.loads(m) for m in client.zrange(key, 0, -1)]
    return found


@pytest.fixture(scope="module")
def drifted(platform: Any) -> Iterator[dict[str, Any]]:
    """The platform after a producer streamed COUNT eta records whose concept changes after DRIFT_AT."""
    platform.start(["mlflow"])  # learn-one restores from the registry at start
    platform.start(["prometheus", "router", "learn", "dashboard"], producers=False, strict=False)
    s = platform.settings
    client = redis.Redis.from_url(s.redis_url)
    start_seq = int(client.get(f"coelho:{DOMAIN}:seq") or 0)
    count_before = drift_count(s.url("learn"))
    env = {**os.environ, **s.to_environ(), **s.function_env()}
    argv = [sys.executable, "-m", "producers", DOMAIN, "--count", str(COUNT), "--drift-at", str(DRIFT_AT),
            "--rate", "0", "--seed", str(SEED)]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    sent = json.loads(result.stdout.strip().splitlines()[-1])
    assert sent["acknowledged"] == COUNT, sent

    # Wait until learn-one has applied them all (the router delivers through the Broker and the Trigger).
    deadline = time.monotonic() + 300
    learned_to = 0
    while time.monotonic() < deadline:
        # learn-one's own position in the domain's log (the Redis summary is refreshed only as events arrive).
        samples = parse_metrics(requests.get(f"{s.url('learn')}/metrics", timeout=5).text)
        learned_to = int(max((v for (name, labels), v in samples.items()
                              if name == "coelho_model_log_position" and dict(labels).get("domain") == DOMAIN), default=0))
        if learned_to >= start_seq + COUNT:
            break
        time.sleep(1)
    assert learned_to >= start_seq + COUNT, f"learn-one reached seq {learned_to}, expected {start_seq + COUNT}"
    yield {"start_seq": start_seq, "end_seq": learned_to, "count_before": count_before, "platform": platform}


def test_injected_drift_is_detected_and_marked_in_redis(drifted: dict[str, Any]) -> None:
    client = redis.Redis.from_url(drifted["platform"].settings.redis_url)
    after = [m for m in markers(client) if drifted["start_seq"] + DRIFT_AT < int(m["seq"]) <= drifted["end_seq"]]
    assert after, f"no drift marker after the injected change (seq > {drifted['start_seq'] + DRIFT_AT}): {markers(client)}"
    assert all(m["t_ms"] > 0 and m["events_learned"] > 0 for m in after)


def test_injected_drift_is_counted_and_alerted(drifted: dict[str, Any]) -> None:
    platform = drifted["platform"]
    assert drift_count(platform.settings.url("learn")) > drifted["count_before"]
    if not platform.running("prometheus"):
        pytest.skip("prometheus is not installed")
    url = platform.settings.url("prometheus")
    deadline = time.monotonic() + 60
    alerts: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        alerts = requests.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        if any(a["labels"]["alertname"] == "CoelhoDriftDetected" and a["labels"].get("domain") == DOMAIN for a in alerts):
            break
        time.sleep(2)
    drift_alerts = [a for a in alerts if a["labels"]["alertname"] == "CoelhoDriftDetected"]
    assert any(a["labels"].get("domain") == DOMAIN and a["state"] == "firing" for a in drift_alerts), alerts


def test_the_observability_data_carries_the_drift_marker(drifted: dict[str, Any]) -> None:
    snap = ObservabilityData(drifted["platform"].settings).snapshot()
    assert DOMAIN in [domain for _, domain in snap.drift], snap.drift
    assert snap.targets.get("coelho-learn") is True, snap.targets
    learned = snap.charts["Events per second"]
    assert any(name.startswith("learned") for name in learned), learned


def test_observability_page_in_a_browser(drifted: dict[str, Any]) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    platform = drifted["platform"]
    if not platform.running("dashboard"):
        pytest.fail("the dashboard is not running (ui module missing?)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1900})
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(platform.settings.url("dashboard") + "/observability")
            page.get_by_text("Source:").first.wait_for()
            page.locator("canvas").first.wait_for()  # the Bokeh charts (their titles are drawn, not DOM text)
            page.get_by_text(f"{DOMAIN} at ").first.wait_for()  # the injected drift, listed with its time
            page.get_by_text("coelho-learn up").first.wait_for()
            assert page.locator("canvas").count() >= 5  # one Bokeh canvas per chart
            page.wait_for_timeout(1500)
            page.screenshot(path=str(SCREENSHOTS / "observability.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
