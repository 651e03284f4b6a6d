"""The Observability page's two data sources give the same answers: the direct scrape of /metrics endpoints and
Prometheus's HTTP API, on a real exporter (prometheus_client's HTTP server) and a real Prometheus."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from coelho.settings import free_port
from ui.metrics_sources import PrometheusSource, ScrapeSource, histogram_quantile, parse_metrics
from ui.observability import ObservabilityData, snapshot_context
from ui.observability_charts import CHARTS, DRIFT, LATENCY, LEARNED, REQUESTS, ChartQuery

PROMETHEUS = shutil.which("prometheus")


class FakeFunction:
    """A real /metrics endpoint exporting the platform's metric names, driven by the test."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.learned = Counter(LEARNED, "events learned", ["domain"], registry=self.registry)
        self.requests = Counter(REQUESTS, "requests", ["function", "type", "code"], registry=self.registry)
        self.latency = Histogram(
            LATENCY, "latency", ["function", "type"], buckets=(0.01, 0.1, 1.0), registry=self.registry
        )
        self.drift = Counter(DRIFT, "drifts", ["domain", "model"], registry=self.registry)
        self.lag = Gauge("coelho_router_consumer_lag", "lag", ["consumer"], registry=self.registry)
        self.port = free_port()
        self.server, self.thread = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        self.url = f"http://127.0.0.1:{self.port}/metrics"

    def traffic(self, learned: int = 50, fast: int = 90, slow: int = 10) -> None:
        self.learned.labels("tfd").inc(learned)
        self.requests.labels("learn", "t", "200").inc(fast + slow)
        self.requests.labels("learn", "t", "503").inc(2)
        for _ in range(fast):
            self.latency.labels("learn", "t").observe(0.005)
        for _ in range(slow):
            self.latency.labels("learn", "t").observe(0.5)

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def exporter() -> Iterator[FakeFunction]:
    fake = FakeFunction()
    yield fake
    fake.close()


def test_histogram_quantile_matches_promql_semantics() -> None:
    assert histogram_quantile(0.5, [(0.1, 10), (0.2, 30), (float("inf"), 40)]) == pytest.approx(0.15)
    assert histogram_quantile(0.99, [(0.1, 10), (float("inf"), 20)]) == 0.1  # in +Inf: the highest finite bound
    assert histogram_quantile(0.5, [(0.1, 0), (float("inf"), 0)]) != histogram_quantile(0.5, [(0.1, 0)])  # NaN


def test_scrape_source_computes_rates_quantiles_and_drift_markers(exporter: FakeFunction) -> None:
    source = ScrapeSource({"coelho-learn": exporter.url})
    source.scrape()
    exporter.traffic(learned=50)
    time.sleep(0.5)
    source.scrape()
    exporter.drift.labels("tfd", "logreg").inc()
    time.sleep(0.5)
    source.scrape()
    assert source.targets() == {"coelho-learn": True}

    rates = source.series(ChartQuery("learned", LEARNED, "rate", by="domain"), 60)
    ((first, *_),) = rates.values()
    assert list(rates) == ["learned tfd"]
    assert 50 / 0.8 < first[1] < 50 / 0.4  # 50 events in about 0.5 s
    errors = source.series(ChartQuery("errors", REQUESTS, "rate", by="function", exclude={"code": "2.."}), 60)
    assert errors["errors learn"][0][1] > 0 and errors["errors learn"][1][1] == 0
    p50 = source.series(ChartQuery("p50", LATENCY, "quantile", quantile=0.5), 60)["p50"][0][1]
    p99 = source.series(ChartQuery("p99", LATENCY, "quantile", quantile=0.99), 60)["p99"][0][1]
    assert 0 < p50 <= 0.01 and 0.1 < p99 <= 1.0

    settings = SimpleNamespace(ports={}, host="127.0.0.1")
    data = ObservabilityData(settings)
    data.scraper = source
    snap = data.snapshot()
    assert [d for _, d in snap.drift] == ["tfd"]
    assert set(snap.charts) == {c.title for c in CHARTS}

    # What the page's chat context tells the assistant: the figures the page draws, by chart and line.
    context = snapshot_context(snap)
    assert context["page"] == "observability" and context["source"] == snap.source
    assert context["targets_up"] == ["coelho-learn"] and context["targets_down"] == []
    assert [m["domain"] for m in context["drift_markers"]] == ["tfd"]
    for title, lines in snap.charts.items():
        assert context["latest"][title] == {n: round(p[-1][1], 4) for n, p in lines.items() if p}, title
    assert any(context["latest"][title] for title in context["latest"])  # the learned rate at least
    assert snapshot_context(None) == {"page": "observability", "status": "collecting metrics, nothing shown yet"}
    dead = ScrapeSource({"coelho-predict": f"http://127.0.0.1:{free_port()}/metrics"}, timeout=0.3)
    dead.scrape()
    data.scraper = dead
    assert snapshot_context(data.snapshot())["targets_down"] == ["coelho-predict"]


def test_scrape_source_reports_a_dead_endpoint_as_down() -> None:
    source = ScrapeSource({"coelho-predict": f"http://127.0.0.1:{free_port()}/metrics"}, timeout=0.3)
    source.scrape()
    assert source.targets() == {"coelho-predict": False}


def test_parse_metrics_keeps_every_sample_with_its_labels(exporter: FakeFunction) -> None:
    exporter.traffic()
    samples = parse_metrics(requests.get(exporter.url, timeout=2).text, {"job": "x"})
    key = (REQUESTS, frozenset({"function": "learn", "type": "t", "code": "503", "job": "x"}.items()))
    assert samples[key] == 2


@pytest.mark.process
@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed")
def test_prometheus_source_agrees_with_the_direct_scrape(exporter: FakeFunction, tmp_path: Path) -> None:
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "coelho-learn", "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    assert PROMETHEUS is not None
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        source = PrometheusSource(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while not source.is_up() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert source.is_up()
        # Prometheus hands new targets to its scrapers at most every 5 s: wait for the first scrape.
        while source.targets() != {"coelho-learn": True} and time.monotonic() < deadline:
            time.sleep(0.2)
        # Steady traffic for a few scrapes: 20 events learned every 0.25 s = 80 events/s.
        for _ in range(24):
            exporter.traffic(learned=20, fast=9, slow=1)
            time.sleep(0.25)
        rates = source.series(ChartQuery("learned", LEARNED, "rate", by="domain", window="5s"), 60)
        assert list(rates) == ["learned tfd"]
        assert 40 < rates["learned tfd"][-1][1] < 120, rates
        p99 = source.series(ChartQuery("p99", LATENCY, "quantile", quantile=0.99, window="5s"), 60)["p99"][-1][1]
        assert 0.1 < p99 <= 1.0
        assert source.targets() == {"coelho-learn": True}
        # The page prefers Prometheus when it answers.
        settings = SimpleNamespace(
            ports={"prometheus": port}, host="127.0.0.1", url=lambda name: f"http://127.0.0.1:{port}"
        )
        assert isinstance(ObservabilityData(settings).source(), PrometheusSource)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
