"""A drift injected through a producer is detected by learn-one, counted (metric, alert) and visible (Redis drift
markers, the Observability page in a real browser, with a screenshot).

The stream is the producers' own eta stream with `drift_at=DRIFT_AT` (road works: traffic 25% slower and half of
the trips on a hidden detour, what `coelho produce eta --drift-at N` sends), recorded and sent by the producer with
`--replay` in two files, before and after the change, so that the change starts at one point of the domain's log
(one file would reach the log partition by partition). In-process, the same seed is detected 88 records after the
change and never before it (tests/observability/test_producer_drift.py, bench/drift.py,
docs/adr/0071-drift-detection-on-producer-drift.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
import requests

import producers
from coelho.settings import PROJECT_ROOT
from ui.metrics_sources import parse_metrics
from ui.observability import ObservabilityData
from ui.observability_charts import DRIFT

from .conftest import prometheus_url

pytestmark = pytest.mark.stack

DOMAIN = "eta"
SEED = 3
DRIFT_AT = 2000  # records before the change (the detector listens after its 1,000-event warm-up)
COUNT = 2600
SCREENSHOTS = PROJECT_ROOT / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def drifted_streams(folder: Path) -> tuple[Path, Path]:
    """The producer's COUNT eta records with `drift_at=DRIFT_AT`, in two files: before and after the change.

    Trip ids are fresh (learn-one learns an id once per hour). Two files, replayed one after the other, because
    the records of one file reach the log partition by partition (keyed by driver): the change would be spread
    across the log in short runs instead of starting at one point.
    """
    tag = uuid.uuid4().hex[:8]
    before, after = folder / "eta-before.jsonl", folder / "eta-after.jsonl"
    with before.open("w") as out_before, after.open("w") as out_after:
        for i, record in enumerate(producers.records(DOMAIN, COUNT, seed=SEED, drift_at=DRIFT_AT)):
            record["trip_id"] = f"{record['trip_id']}-{tag}"
            (out_after if i >= DRIFT_AT else out_before).write(json.dumps(record) + "\n")
    return before, after


def drift_count(learn_url: str) -> float:
    samples = parse_metrics(requests.get(f"{learn_url}/metrics", timeout=5).text)
    return sum(v for (name, labels), v in samples.items() if name == DRIFT and dict(labels).get("domain") == DOMAIN)


def markers(client: redis.Redis) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for key in client.scan_iter(match=f"coelho:{DOMAIN}:model:*:drift"):
        found += [json.loads(m) for m in cast(list[bytes], client.zrange(key, 0, -1))]
    return found


def replay_and_wait(platform: Any, stream: Path, until_seq: int) -> int:
    """Replay `stream` with the producer and wait until learn-one has applied the log up to `until_seq`."""
    s = platform.settings
    env = {**os.environ, **s.to_environ(), **s.function_env()}
    # A producer follows the domain's live rate control in Redis over its --rate: tests sharing the session's
    # platform (the dashboard's) may have left one (5 events/s would make this replay take minutes).
    redis.Redis.from_url(s.redis_url).delete(f"coelho:producer:{DOMAIN}:rate")
    argv = [sys.executable, "-m", "producers", DOMAIN, "--replay", str(stream), "--rate", "0"]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    sent = json.loads(result.stdout.strip().splitlines()[-1])
    assert sent["acknowledged"] == len(stream.read_text().splitlines()), sent
    deadline = time.monotonic() + 300
    position = 0
    while time.monotonic() < deadline:
        # learn-one's own position in the domain's log (the Redis summary is refreshed only as events arrive).
        samples = parse_metrics(requests.get(f"{s.url('learn')}/metrics", timeout=5).text)
        position = int(
            max(
                (
                    v
                    for (name, labels), v in samples.items()
                    if name == "coelho_model_log_position" and dict(labels).get("domain") == DOMAIN
                ),
                default=0,
            )
        )
        if position >= until_seq:
            return position
        time.sleep(1)
    raise AssertionError(f"learn-one reached seq {position}, expected {until_seq}")


@pytest.fixture(scope="module")
def drifted(platform: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The platform after a producer replayed DRIFT_AT eta records, then COUNT - DRIFT_AT with a changed concept."""
    platform.start(["mlflow"])  # learn-one restores from the registry at start
    platform.start(["prometheus", "router", "learn", "dashboard"], producers=False)
    client = redis.Redis.from_url(platform.settings.redis_url)
    before, after = drifted_streams(tmp_path_factory.mktemp("drift"))
    count_before = drift_count(platform.settings.url("learn"))
    start_seq = int(client.get(f"coelho:{DOMAIN}:seq") or 0)
    change_seq = replay_and_wait(platform, before, start_seq + DRIFT_AT)
    change_seq = max(change_seq, int(client.get(f"coelho:{DOMAIN}:seq") or 0))  # + any other eta events meanwhile
    end_seq = replay_and_wait(platform, after, change_seq + COUNT - DRIFT_AT)
    yield {"change_seq": change_seq, "end_seq": end_seq, "count_before": count_before, "platform": platform}


def test_injected_drift_is_detected_and_marked_in_redis(drifted: dict[str, Any]) -> None:
    client = redis.Redis.from_url(drifted["platform"].settings.redis_url)
    after = [m for m in markers(client) if drifted["change_seq"] < int(m["seq"]) <= drifted["end_seq"]]
    assert after, f"no drift marker after the change at seq {drifted['change_seq']}: {markers(client)}"
    assert all(m["t_ms"] > 0 and m["events_learned"] > 0 for m in after)


def test_injected_drift_is_counted_and_alerted(drifted: dict[str, Any]) -> None:
    platform = drifted["platform"]
    assert drift_count(platform.settings.url("learn")) > drifted["count_before"]
    url = prometheus_url(platform)
    deadline = time.monotonic() + 60
    alerts: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        alerts = requests.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        if any(
            a["labels"]["alertname"] == "CoelhoDriftDetected" and a["labels"].get("domain") == DOMAIN for a in alerts
        ):
            break
        time.sleep(2)
    drift_alerts = [a for a in alerts if a["labels"]["alertname"] == "CoelhoDriftDetected"]
    assert any(a["labels"].get("domain") == DOMAIN and a["state"] == "firing" for a in drift_alerts), alerts


def test_the_observability_data_carries_the_drift_marker(drifted: dict[str, Any]) -> None:
    data = ObservabilityData(drifted["platform"].settings)
    # The page refreshes every few seconds; a rate needs two scrapes of the learned counter after the events.
    deadline = time.monotonic() + 45
    while True:
        snap = data.snapshot()
        learned = snap.charts["Events per second"]
        if any(name.startswith("learned") for name in learned) or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert DOMAIN in [domain for _, domain in snap.drift], snap.drift
    assert snap.targets.get("coelho-learn") is True, snap.targets
    assert any(name.startswith("learned") for name in learned), learned


@pytest.mark.browser
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
            page.screenshot(path=str(SCREENSHOTS / "observability-drift.png"), timeout=120_000)
            assert not errors, errors
        finally:
            browser.close()
