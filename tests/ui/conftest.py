"""Browser-test fixtures: the real platform with the dashboard, data flowing, and Chromium driven by Playwright.

Debian's Chromium is used as it is (never `playwright install`: ./dev installs Debian's `chromium`). Screenshots go to
test-artifacts/screenshots/ (gitignored); timings are logged, never asserted.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cloudevents.core.bindings.http import to_binary_event
from cloudevents.core.v1.event import CloudEvent

from eventing.cloudevent_types import CHECKPOINT_REQUESTED
from eventing.domains import DOMAINS

log = logging.getLogger("tests.ui")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SERVICES = ["router", "learn", "predict", "checkpoint", "producer_tfd", "producer_eta", "producer_ecci", "dashboard"]
FED_PER_DOMAIN = 400


def post_event(url: str, ce_type: str, source: str, data: Any, **extensions: str) -> requests.Response:
    attributes = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": ce_type,
        "source": source,
        "datacontenttype": "application/json",
        **extensions,
    }
    message = to_binary_event(CloudEvent(attributes, data))
    return requests.post(url, headers=dict(message.headers), data=message.body, timeout=180)


def feed_records(url: str, domain: str, count: int, seed: int) -> int:
    """Post `count` generated records straight to learn-one (as the router would deliver them)."""
    from producers.generators import make_generator

    d = DOMAINS[domain]
    accepted = 0
    with requests.Session() as session:
        for event in make_generator(domain, seed=seed, start="now").take(count):
            attributes = {
                "specversion": "1.0",
                "id": event.id,
                "type": d.type(event.kind),
                "source": d.source("tests"),
                "datacontenttype": "application/json",
                "domain": domain,
                "partitionkey": event.key,
            }
            message = to_binary_event(CloudEvent(attributes, event.data))
            resp = session.post(url, headers=dict(message.headers), data=message.body, timeout=30)
            accepted += resp.status_code < 300
    return accepted


@pytest.fixture(scope="module")
def dashboard(platform: Any) -> Iterator[Any]:
    """The platform with the dashboard and everything it shows, models trained on real events."""
    started = time.monotonic()
    platform.start(["mlflow"])
    platform.start(SERVICES)
    s = platform.settings
    import redis

    client = redis.Redis.from_url(s.redis_url)
    for domain in DOMAINS:  # keep the producers gentle: the browser and the services share two cores
        client.set(f"coelho:producer:{domain}:rate", "5")
        client.set(f"coelho:producer:{domain}:enabled", "1")
    for i, domain in enumerate(DOMAINS):
        fed = feed_records(s.url("learn") + "/", domain, FED_PER_DOMAIN, seed=100 + i)
        assert fed == FED_PER_DOMAIN, f"learn-one accepted {fed} of {FED_PER_DOMAIN} {domain} records"
    resp = post_event(s.url("checkpoint") + "/", CHECKPOINT_REQUESTED, "/coelho/tests", {"domains": list(DOMAINS)})
    assert resp.status_code < 300, resp.text
    log.info("platform with data ready in %.1f s", time.monotonic() - started)
    yield platform
    for domain in DOMAINS:
        with contextlib.suppress(redis.RedisError):
            client.set(f"coelho:producer:{domain}:enabled", "0")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(60_000)  # the machine is shared: generous, never a timing assertion
    pg.set_default_navigation_timeout(120_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.errors = errors  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        context.close()
