"""Where the Observability page's numbers come from: Prometheus's HTTP API when it is up (`PrometheusSource`), or
the services' /metrics endpoints scraped directly (`ScrapeSource`, which keeps its own short history and computes
rates and histogram quantiles the way PromQL does). Both answer the same `ChartQuery`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from prometheus_client.parser import text_string_to_metric_families

from ui.observability_charts import ChartQuery, Point

LabelSet = frozenset[tuple[str, str]]


class MetricsSource(Protocol):
    name: str

    def series(self, query: ChartQuery, window_s: float) -> dict[str, list[Point]]: ...

    def targets(self) -> dict[str, bool]: ...

    def earliest(self, window_s: float) -> float | None: ...


def _series_name(query: ChartQuery, labels: Mapping[str, str]) -> str:
    if query.by and labels.get(query.by):
        return f"{query.label} {labels[query.by]}"
    return query.label


class PrometheusSource:
    """Reads charts from Prometheus's HTTP API (query_range) and targets from /api/v1/targets."""

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        self.url = url.rstrip("/")
        self.name = f"Prometheus at {self.url}"
        self.timeout = timeout

    def is_up(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=0.5).status_code == 200
        except requests.RequestException:
            return False

    def series(self, query: ChartQuery, window_s: float) -> dict[str, list[Point]]:
        end = time.time()
        step = max(2.0, window_s / 150)
        reply = requests.get(
            f"{self.url}/api/v1/query_range",
            params={"query": query.promql(), "start": str(end - window_s), "end": str(end), "step": str(step)},
            timeout=self.timeout,
        )
        reply.raise_for_status()
        out: dict[str, list[Point]] = {}
        for result in reply.json()["data"]["result"]:
            points = [(float(t), float(v)) for t, v in result["values"] if math.isfinite(float(v))]
            out[_series_name(query, result["metric"])] = points
        return out

    def earliest(self, window_s: float) -> float | None:
        """When Prometheus's data in the window begins (its first scrape of anything)."""
        points = self.series(ChartQuery("scrapes", "up", "value"), window_s).get("scrapes", [])
        return points[0][0] if points else None

    def targets(self) -> dict[str, bool]:
        reply = requests.get(f"{self.url}/api/v1/targets", params={"state": "active"}, timeout=self.timeout)
        reply.raise_for_status()
        return {
            t["labels"].get("job", t["scrapeUrl"]): t["health"] == "up" for t in reply.json()["data"]["activeTargets"]
        }


@dataclass
class Scrape:
    at: float
    samples: dict[tuple[str, LabelSet], float]


def parse_metrics(text: str, extra_labels: Mapping[str, str] | None = None) -> dict[tuple[str, LabelSet], float]:
    """Samples of a Prometheus text exposition, keyed by (sample name, labels)."""
    extra = dict(extra_labels or {})
    samples: dict[tuple[str, LabelSet], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = frozenset({**sample.labels, **extra}.items())
            samples[(sample.name, labels)] = float(sample.value)
    return samples


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """PromQL's histogram_quantile over cumulative (upper bound, count) pairs.

    >>> round(histogram_quantile(0.5, [(0.1, 10), (0.2, 30), (float("inf"), 40)]), 6)  # rounded: float arithmetic
    0.15
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return math.nan
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for upper, count in ordered:
        if count >= rank:
            if math.isinf(upper):
                return lower_bound
            if count == lower_count:
                return upper
            return lower_bound + (upper - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = upper, count
    return lower_bound


class ScrapeSource:
    """Scrapes the services' /metrics endpoints itself and keeps a short history, for when Prometheus is absent."""

    name = "the services' /metrics endpoints (Prometheus is not running)"

    def __init__(self, endpoints: Mapping[str, str], history: int = 360, timeout: float = 1.0) -> None:
        self.endpoints = dict(endpoints)  # job name -> metrics URL
        self.timeout = timeout
        self.scrapes: deque[Scrape] = deque(maxlen=history)
        self.up: dict[str, bool] = {}
        self._lock = threading.Lock()

    def scrape(self) -> Scrape:
        samples: dict[tuple[str, LabelSet], float] = {}
        for job, url in self.endpoints.items():
            try:
                reply = requests.get(url, timeout=self.timeout)
                reply.raise_for_status()
                samples.update(parse_metrics(reply.text, {"job": job}))
                self.up[job] = True
            except (requests.RequestException, ValueError):
                self.up[job] = False
        current = Scrape(time.time(), samples)
        with self._lock:
            self.scrapes.append(current)
        return current

    def targets(self) -> dict[str, bool]:
        return dict(self.up)

    def earliest(self, window_s: float) -> float | None:
        with self._lock:
            inside = [s.at for s in self.scrapes if s.at >= time.time() - window_s]
        return inside[0] if inside else None

    def _sum(self, scrape: Scrape, name: str, query: ChartQuery) -> dict[str, float]:
        sums: dict[str, float] = {}
        for (sample_name, labels), value in scrape.samples.items():
            if sample_name != name:
                continue
            label_map = dict(labels)
            if query.accepts(label_map):
                key = _series_name(query, label_map)
                sums[key] = sums.get(key, 0.0) + value
        return sums

    def _bucket_rates(self, before: Scrape, after: Scrape, query: ChartQuery) -> list[tuple[float, float]]:
        per_le: dict[float, float] = {}
        name = query.metric + "_bucket"
        for (sample_name, labels), value in after.samples.items():
            if sample_name != name:
                continue
            label_map = dict(labels)
            if not query.accepts(label_map):
                continue
            delta = value - before.samples.get((sample_name, labels), 0.0)
            le = float(label_map.get("le", "inf"))
            per_le[le] = per_le.get(le, 0.0) + max(delta, 0.0)
        return list(per_le.items())

    def series(self, query: ChartQuery, window_s: float) -> dict[str, list[Point]]:
        lines = self._series(query, window_s)
        if query.scale == 1.0:
            return lines
        return {name: [(t, v * query.scale) for t, v in points] for name, points in lines.items()}

    def _series(self, query: ChartQuery, window_s: float) -> dict[str, list[Point]]:
        with self._lock:
            scrapes = [s for s in self.scrapes if s.at >= time.time() - window_s]
        out: dict[str, list[Point]] = {}
        if query.kind == "value":
            for scrape in scrapes:
                for key, value in self._sum(scrape, query.metric, query).items():
                    out.setdefault(key, []).append((scrape.at, value))
            return out
        for before, after in zip(scrapes, scrapes[1:], strict=False):
            dt = after.at - before.at
            if dt <= 0:
                continue
            if query.kind == "rate":
                old = self._sum(before, query.metric, query)
                for key, value in self._sum(after, query.metric, query).items():
                    delta = value - old.get(key, 0.0)
                    out.setdefault(key, []).append((after.at, max(delta, 0.0) / dt))  # a reset counts as 0
            else:
                value = histogram_quantile(query.quantile, self._bucket_rates(before, after, query))
                if math.isfinite(value):
                    out.setdefault(query.label, []).append((after.at, value))
        return out


def metrics_endpoints(settings: Any) -> dict[str, str]:
    """Job name -> /metrics URL of every component that exports metrics, from the settings' port table (the job
    names are the embedded Prometheus's: coelho-<service>)."""
    ports: Mapping[str, int] = settings.ports
    jobs = [name for name in ("learn", "predict", "checkpoint", "chat", "lake", "sql") if name in ports]
    endpoints = {f"coelho-{job}": f"http://{settings.host}:{ports[job]}/metrics" for job in jobs}
    if "router_metrics" in ports:
        endpoints["coelho-router"] = f"http://{settings.host}:{ports['router_metrics']}/metrics"
    if "dashboard" in ports:
        endpoints["coelho-dashboard"] = f"http://{settings.host}:{ports['dashboard']}/metrics"
    for name, port in ports.items():
        if name.startswith("producer_"):
            endpoints[f"coelho-{name}"] = f"http://{settings.host}:{port}/metrics"
    return endpoints
