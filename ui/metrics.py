"""The dashboard's own Prometheus metrics, served on its server at GET /metrics (scraped like the other services).

coelho_dashboard_sessions                          browser sessions open now
coelho_dashboard_page_loads_total{endpoint}        pages built for a browser, per route
coelho_dashboard_prediction_clicks_total{domain, outcome}   Predict clicks: ok, invalid (the form), refused
                                                   (predict-one said no or is down), error (a bug)
coelho_dashboard_callback_seconds{operation}       how long the server-side callbacks take (the page refreshes,
                                                   a prediction, the banner): what makes a page feel slow

One registry of its own (not the process-wide default): the dashboard exports exactly these.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry()
SESSIONS = Gauge("coelho_dashboard_sessions", "Browser sessions open", registry=REGISTRY)
PAGE_LOADS = Counter("coelho_dashboard_page_loads", "Pages built for a browser", ["endpoint"], registry=REGISTRY)
PREDICTION_CLICKS = Counter(
    "coelho_dashboard_prediction_clicks", "Predict clicks, by outcome", ["domain", "outcome"], registry=REGISTRY
)
CALLBACK_SECONDS = Histogram(
    "coelho_dashboard_callback_seconds",
    "Time in a server-side callback of the dashboard",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)


@contextmanager
def timed(operation: str) -> Iterator[None]:
    """Observe how long the block takes as a `coelho_dashboard_callback_seconds` sample of `operation`.

    >>> with timed("doctest"):
    ...     pass
    >>> REGISTRY.get_sample_value("coelho_dashboard_callback_seconds_count", {"operation": "doctest"}) >= 1
    True
    """
    started = time.perf_counter()
    try:
        yield
    finally:
        CALLBACK_SECONDS.labels(operation).observe(time.perf_counter() - started)


def exposition() -> bytes:
    """The text the /metrics endpoint serves."""
    return generate_latest(REGISTRY)


def metrics_handler() -> type:
    """GET /metrics on the dashboard's own server (a Tornado handler for pn.serve's extra_patterns)."""
    from prometheus_client import CONTENT_TYPE_LATEST
    from tornado.web import RequestHandler

    class MetricsHandler(RequestHandler):  # type: ignore[misc]
        def get(self) -> None:
            self.set_header("Content-Type", CONTENT_TYPE_LATEST)
            self.finish(exposition())

    return MetricsHandler
