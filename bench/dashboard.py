"""Dashboard speed: page-interactive time per page and click-to-prediction latency, in a real Chromium.

Starts an isolated platform (free ports, temporary data dir: redis, kafka, s3, learn, predict, the dashboard),
feeds each domain some generated records straight to learn-one, then drives Debian's Chromium with Playwright:
  - page_interactive_s: from navigation to the page rendered and its websocket session idle (targets: <= 3 s);
  - prediction_ms: from the click on Predict to the answer on screen (target: <= 300 ms);
  - predict_http_ms: the dashboard's own HTTP round trip to predict-one (part of the above).
Prints one JSON object on the last line.

    .venv/bin/python bench/dashboard.py [--loads 3] [--clicks 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
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
from coelho.settings import Settings  # noqa: E402
from eventing.domains import DOMAINS  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]
INTERACTIVE = "() => window.Bokeh !== undefined && Bokeh.documents.length > 0 && Bokeh.documents[0].is_idle"
PAGES = {"/": "Real-time machine learning", "/tfd": "Randomize All Fields", "/eta": "Randomize All Fields", "/ecci": "Randomize All Fields"}
RESULT = {"tfd": "Not fraud", "eta": "ETA (minutes)", "ecci": "Predicted segment"}


def feed(url: str, domain: str, count: int) -> None:
    from producers.generators import make_generator

    d = DOMAINS[domain]
    with requests.Session() as session:
        for event in make_generator(domain, seed=1, start="now").take(count):
            attrs = {"specversion": "1.0", "id": str(uuid.uuid4()), "type": d.type(event.kind), "source": d.source("bench"),
                     "datacontenttype": "application/json", "domain": domain, "partitionkey": event.key}
            msg = to_binary_event(CloudEvent(attrs, event.data))
            session.post(url, headers=dict(msg.headers), data=msg.body, timeout=60)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run(settings: Settings, loads: int, clicks: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from eventing.domains import get_domain
    from ui.predict_client import request_prediction
    from ui.sample import sample_payload

    base = settings.url("dashboard")
    out: dict[str, Any] = {"page_interactive_s": {}, "prediction_ms": {}}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            for route, text in PAGES.items():
                times = []
                for _ in range(loads):
                    page = browser.new_page(viewport={"width": 1500, "height": 1000})
                    start = time.perf_counter()
                    page.goto(base + route, timeout=120_000)
                    page.get_by_text(text).first.wait_for(timeout=60_000)
                    page.wait_for_function(INTERACTIVE, timeout=60_000)
                    times.append(time.perf_counter() - start)
                    page.close()
                out["page_interactive_s"][route] = {"median": round(statistics.median(times), 3), "max": round(max(times), 3)}
            for domain, text in RESULT.items():
                page = browser.new_page(viewport={"width": 1500, "height": 1000})
                page.goto(f"{base}/{domain}", timeout=120_000)
                page.wait_for_function(INTERACTIVE, timeout=60_000)
                latencies = []
                for _ in range(clicks):
                    page.get_by_role("button", name="Randomize All Fields").click()
                    page.get_by_text(text).first.wait_for(state="hidden", timeout=60_000)
                    start = time.perf_counter()
                    page.get_by_role("button", name="Predict", exact=True).click()
                    page.get_by_text(text).first.wait_for(timeout=60_000)
                    latencies.append((time.perf_counter() - start) * 1000)
                page.close()
                out["prediction_ms"][domain] = {"p50": round(pct(latencies, 0.5), 1), "p95": round(pct(latencies, 0.95), 1)}
        finally:
            browser.close()
    http = []
    for _ in range(50):
        reply = request_prediction(settings, get_domain("tfd"), sample_payload(get_domain("tfd")))
        http.append(reply.latency_ms)
    out["predict_http_ms"] = {"p50": round(pct(http, 0.5), 2), "p95": round(pct(http, 0.95), 2)}
    worst_page = max(v["median"] for v in out["page_interactive_s"].values())
    worst_prediction = max(v["p50"] for v in out["prediction_ms"].values())
    out["targets"] = {
        "page_interactive_s": 3.0, "prediction_ms": 300.0,
        "page_interactive_met": worst_page <= 3.0, "prediction_met": worst_prediction <= 300.0,
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loads", type=int, default=3, help="page loads per page")
    parser.add_argument("--clicks", type=int, default=10, help="predictions per domain")
    parser.add_argument("--events", type=int, default=300, help="records fed per domain before measuring")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coelho-bench-dashboard-") as tmp:
        settings = Settings.load().with_free_ports(Path(tmp))
        platform = Platform(settings, echo=lambda line: print(line, file=sys.stderr))
        try:
            platform.start(["learn", "predict", "dashboard"], producers=False)
            for domain in DOMAINS:
                feed(settings.url("learn") + "/", domain, args.events)
            time.sleep(1.5)  # let the dashboard's poller see the models
            result = run(settings, args.loads, args.clicks)
        finally:
            platform.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
