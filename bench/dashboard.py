"""Dashboard speed: page-interactive time per page and click-to-prediction latency, in a real Chromium.

Starts an isolated platform (free ports, temporary data dir: redis, kafka, s3, learn, predict, the dashboard),
feeds each domain some generated records straight to learn-one, then drives Debian's Chromium with Playwright:
  - page_interactive_s: from navigation to the page rendered and its websocket session idle (targets: <= 3 s);
  - prediction_ms: from the click on Predict to the answer on screen (target: <= 300 ms);
  - predict_http_ms: the dashboard's own HTTP round trip to predict-one (part of the above).
With --compare ROOT a second dashboard is served from another checkout (e.g. `git worktree add /tmp/old <commit>`)
against the same platform, and every page load and click alternates between the two: on a shared machine whose
load swings from 5 to 20 within minutes, only such paired figures compare two versions fairly ("compare" in the
JSON). The load average before and after the run is printed too.
Prints one JSON object on the last line.

    .venv/bin/python bench/dashboard.py [--loads 3] [--clicks 10] [--compare /tmp/old]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from cloudevents.core.bindings.http import to_binary_event
from cloudevents.core.v1.event import CloudEvent

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coelho.runtime import Platform  # noqa: E402
from coelho.settings import Settings, free_port  # noqa: E402
from eventing.domains import DOMAINS  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
INTERACTIVE = "() => window.Bokeh !== undefined && Bokeh.documents.length > 0 && Bokeh.documents[0].is_idle"
PAGES = {
    "/": "Real-time machine learning",
    "/tfd": "Randomize All Fields",
    "/eta": "Randomize All Fields",
    "/ecci": "Randomize All Fields",
}
RESULT = {"tfd": "Not fraud", "eta": "ETA (minutes)", "ecci": "Predicted segment"}


def feed(url: str, domain: str, count: int) -> None:
    from producers.generators import make_generator

    d = DOMAINS[domain]
    with requests.Session() as session:
        for event in make_generator(domain, seed=1, start="now").take(count):
            attrs = {
                "specversion": "1.0",
                "id": str(uuid.uuid4()),
                "type": d.type(event.kind),
                "source": d.source("bench"),
                "datacontenttype": "application/json",
                "domain": domain,
                "partitionkey": event.key,
            }
            msg = to_binary_event(CloudEvent(attrs, event.data))
            session.post(url, headers=dict(msg.headers), data=msg.body, timeout=60)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _open(browser: Any, url: str, text: str) -> tuple[Any, float]:
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    start = time.perf_counter()
    page.goto(url, timeout=120_000)
    page.get_by_text(text).first.wait_for(timeout=60_000)
    page.wait_for_function(INTERACTIVE, timeout=60_000)
    return page, time.perf_counter() - start


def _click(page: Any, text: str) -> float:
    page.get_by_role("button", name="Randomize All Fields").click()
    page.get_by_text(text).first.wait_for(state="hidden", timeout=60_000)
    start = time.perf_counter()
    page.get_by_role("button", name="Predict", exact=True).click()
    page.get_by_text(text).first.wait_for(timeout=60_000)
    return (time.perf_counter() - start) * 1000


def measure(bases: dict[str, str], loads: int, clicks: int) -> dict[str, dict[str, Any]]:
    """Page-interactive and click-to-prediction figures per dashboard in `bases`, alternating between them."""
    from playwright.sync_api import sync_playwright

    times: dict[str, dict[str, list[float]]] = {b: {} for b in bases}
    clicks_ms: dict[str, dict[str, list[float]]] = {b: {} for b in bases}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            for route, text in PAGES.items():
                for _ in range(loads):
                    for label, base in bases.items():
                        page, seconds = _open(browser, base + route, text)
                        times[label].setdefault(route, []).append(seconds)
                        page.close()
            for domain, text in RESULT.items():
                pages = {
                    label: _open(browser, f"{base}/{domain}", "Randomize All Fields")[0]
                    for label, base in bases.items()
                }
                for _ in range(clicks):
                    for label, page in pages.items():
                        clicks_ms[label].setdefault(domain, []).append(_click(page, text))
                for page in pages.values():
                    page.close()
        finally:
            browser.close()
    out: dict[str, dict[str, Any]] = {}
    for label in bases:
        out[label] = {
            "page_interactive_s": {
                r: {"median": round(statistics.median(v), 3), "max": round(max(v), 3)} for r, v in times[label].items()
            },
            "prediction_ms": {
                d: {"p50": round(pct(v, 0.5), 1), "p95": round(pct(v, 0.95), 1)} for d, v in clicks_ms[label].items()
            },
        }
    return out


def run(settings: Settings, loads: int, clicks: int, compare: str | None = None) -> dict[str, Any]:
    from eventing.domains import get_domain
    from ui.predict_client import request_prediction
    from ui.sample import sample_payload

    bases = {"this": settings.url("dashboard")}
    other = None
    if compare:
        port = free_port()
        env = {**os.environ, **settings.to_environ(), "PORT": str(port), "PYTHONPATH": compare}
        other = subprocess.Popen(
            [sys.executable, "-m", "ui"], cwd=compare, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        bases["compare"] = f"http://{settings.host}:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(bases["compare"] + "/api/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or other.poll() is not None:
                other.kill()
                raise SystemExit(f"the dashboard from {compare} did not start")
            time.sleep(0.5)
        time.sleep(1.5)  # its poller's first snapshot
    try:
        measured = measure(bases, loads, clicks)
    finally:
        if other is not None:
            other.terminate()
            try:
                other.wait(10)
            except subprocess.TimeoutExpired:
                other.kill()
    out: dict[str, Any] = dict(measured["this"])
    if compare:
        out["compare"] = {"root": compare, **measured["compare"]}
    http = []
    for _ in range(50):
        reply = request_prediction(settings, get_domain("tfd"), sample_payload(get_domain("tfd")))
        http.append(reply.latency_ms)
    out["predict_http_ms"] = {"p50": round(pct(http, 0.5), 2), "p95": round(pct(http, 0.95), 2)}
    worst_page = max(v["median"] for v in out["page_interactive_s"].values())
    worst_prediction = max(v["p50"] for v in out["prediction_ms"].values())
    out["targets"] = {
        "page_interactive_s": 3.0,
        "prediction_ms": 300.0,
        "page_interactive_met": worst_page <= 3.0,
        "prediction_met": worst_prediction <= 300.0,
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loads", type=int, default=3, help="page loads per page")
    parser.add_argument("--clicks", type=int, default=10, help="predictions per domain")
    parser.add_argument("--events", type=int, default=300, help="records fed per domain before measuring")
    parser.add_argument("--compare", metavar="ROOT", help="also serve the dashboard of this checkout; alternate")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coelho-bench-dashboard-") as tmp:
        settings = Settings.load().with_free_ports(Path(tmp))
        platform = Platform(settings, echo=lambda line: print(line, file=sys.stderr))
        try:
            platform.start(["learn", "predict", "dashboard"], producers=False)
            for domain in DOMAINS:
                feed(settings.url("learn") + "/", domain, args.events)
            time.sleep(1.5)  # let the dashboard's poller see the models
            load_before = os.getloadavg()[0]
            result = run(settings, args.loads, args.clicks, args.compare)
            result["load_avg"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
        finally:
            platform.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
