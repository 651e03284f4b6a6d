"""The Observability page: live events/s, latency percentiles, errors, lag and drift markers.

Each chart is declared once as a `ChartQuery` (which metric, how to aggregate it). The same declaration runs
against Prometheus's HTTP API when Prometheus is up (`PrometheusSource`, PromQL rendered from the query), and
otherwise straight against the services' /metrics endpoints (`ScrapeSource`, which keeps its own short history
and computes rates and histogram quantiles the way PromQL does). The dashboard mounts `page(settings)`.

>>> ChartQuery("Learned", "coelho_events_learned_total", "rate", by="domain").promql()
'sum by (domain) (rate(coelho_events_learned_total[1m]))'
>>> ChartQuery("p95", "coelho_function_request_seconds", "quantile", quantile=0.95).promql()
'histogram_quantile(0.95, sum by (le) (rate(coelho_function_request_seconds_bucket[1m])))'
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import requests
from prometheus_client.parser import text_string_to_metric_families

Kind = Literal["rate", "quantile", "value"]
Point = tuple[float, float]  # (unix seconds, value)
LabelSet = frozenset[tuple[str, str]]

RATE_WINDOW = "1m"


@dataclass(frozen=True)
class ChartQuery:
    """One line (or one line per value of `by`) on a chart, declared independently of where the data comes from.

    kind: "rate" = per-second rate of a counter, summed; "quantile" = histogram_quantile over all series;
    "value" = a gauge (or counter) summed as it is. `match` holds exact label matchers, `exclude` negative regex
    matchers (e.g. {"code": "2.."} keeps only non-2xx responses).
    """

    label: str
    metric: str
    kind: Kind
    by: str | None = None
    quantile: float = 0.5
    match: Mapping[str, str] = field(default_factory=dict)
    exclude: Mapping[str, str] = field(default_factory=dict)
    window: str = RATE_WINDOW  # range of rate(); PromQL divides by it, so a series younger than it reads low
    scale: float = 1.0  # multiply the values (60: a per-second rate drawn per minute)

    def _selector(self, name: str) -> str:
        parts = [f'{k}="{v}"' for k, v in sorted(self.match.items())]
        parts += [f'{k}!~"{v}"' for k, v in sorted(self.exclude.items())]
        return name + ("{" + ",".join(parts) + "}" if parts else "")

    def promql(self) -> str:
        """The PromQL of this line.

        >>> ChartQuery("per min", "x_total", "rate", scale=60.0).promql()
        '60 * sum (rate(x_total[1m]))'
        """
        if self.scale != 1.0:
            return f"{self.scale:g} * {ChartQuery(**{**self.__dict__, 'scale': 1.0}).promql()}"
        grouping = f"sum by ({self.by}) " if self.by else "sum "
        if self.kind == "rate":
            return f"{grouping}(rate({self._selector(self.metric)}[{self.window}]))"
        if self.kind == "quantile":
            le = f"le, {self.by}" if self.by else "le"
            inner = f"sum by ({le}) (rate({self._selector(self.metric + '_bucket')}[{self.window}]))"
            return f"histogram_quantile({self.quantile}, {inner})"
        return f"{grouping}({self._selector(self.metric)})"

    def accepts(self, labels: Mapping[str, str]) -> bool:
        import re

        if any(labels.get(k) != v for k, v in self.match.items()):
            return False
        return not any(re.fullmatch(v, labels.get(k, "")) for k, v in self.exclude.items())


@dataclass(frozen=True)
class Chart:
    """A chart of the page. `zero_when_empty`: no series means none happened (errors), drawn as a line at 0."""

    title: str
    unit: str
    queries: tuple[ChartQuery, ...]
    zero_when_empty: bool = False


# Metric names exported by the platform (functions/, eventing/router/, producers/); the alert rules and the
# Grafana dashboards in knative/monitoring/ query the same names, and tests/observability checks they exist.
LEARNED = "coelho_events_learned_total"
PRODUCED = "coelho_producer_events_total"
REQUESTS = "coelho_function_requests_total"
LATENCY = "coelho_function_request_seconds"
ROUTER_LAG = "coelho_router_consumer_lag"
DEAD_LETTERED = "coelho_router_dead_lettered_total"
DRIFT = "coelho_drift_detected_total"
DASHBOARD_SESSIONS = "coelho_dashboard_sessions"
DASHBOARD_PAGES = "coelho_dashboard_page_loads_total"
DASHBOARD_CLICKS = "coelho_dashboard_prediction_clicks_total"
DASHBOARD_CALLBACKS = "coelho_dashboard_callback_seconds"
LAKE_ROWS = "coelho_lake_rows_written_total"
LAKE_LAG = "coelho_lake_lag_seconds"

CHARTS: tuple[Chart, ...] = (
    Chart(
        "Events per second",
        "events/s",
        (
            ChartQuery("learned", LEARNED, "rate", by="domain"),
            ChartQuery("produced", PRODUCED, "rate", by="domain"),
        ),
    ),
    Chart(
        "Function latency percentiles",
        "seconds",
        tuple(ChartQuery(f"p{int(q * 100)}", LATENCY, "quantile", quantile=q) for q in (0.5, 0.95, 0.99)),
    ),
    Chart(
        "Errors per second",
        "errors/s",
        (
            ChartQuery("function errors", REQUESTS, "rate", by="function", exclude={"code": "2.."}),
            ChartQuery("dead-lettered", DEAD_LETTERED, "rate", by="trigger"),
        ),
        zero_when_empty=True,  # a failure counter is exported once it counts: no series means no errors
    ),
    Chart("Consumer lag", "events", (ChartQuery("lag", ROUTER_LAG, "value", by="consumer"),)),
    Chart("Drift detections", "detections", (ChartQuery("drift", DRIFT, "value", by="domain"),)),
    Chart("Lake: rows committed per second", "rows/s", (ChartQuery("rows", LAKE_ROWS, "rate", by="domain"),)),
    Chart(
        "Dashboard: sessions, page loads and Predict clicks",
        "sessions · per minute",
        (
            ChartQuery("sessions open", DASHBOARD_SESSIONS, "value"),
            ChartQuery("page loads/min", DASHBOARD_PAGES, "rate", scale=60.0),
            ChartQuery("Predict clicks/min", DASHBOARD_CLICKS, "rate", scale=60.0),
        ),
    ),
    Chart(
        "Dashboard: callback latency",
        "seconds",
        tuple(
            ChartQuery(f"p{int(q * 100)} {op}", DASHBOARD_CALLBACKS, "quantile", quantile=q, match={"operation": op})
            for op in ("page_refresh", "predict")
            for q in (0.5, 0.95)
        ),
    ),
    Chart("Lake: arrival to commit", "seconds", (ChartQuery("p95", LAKE_LAG, "quantile", quantile=0.95),)),
)


# --- where the numbers come from ---------------------------------------------------------------------------
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


def drift_markers(source: MetricsSource, window_s: float) -> list[tuple[float, str]]:
    """(time, domain) of every drift detection in the window: where coelho_drift_detected_total went up.

    A series that appears with a value above 0 after the source started collecting counts as an increase from 0
    (a labelled counter is exported only once it has been incremented).
    """
    markers: list[tuple[float, str]] = []
    origin = source.earliest(window_s)
    for name, points in source.series(ChartQuery("drift", DRIFT, "value", by="domain"), window_s).items():
        domain = name.removeprefix("drift").strip() or "?"
        if points and points[0][1] > 0 and origin is not None and points[0][0] > origin + 1:
            markers.append((points[0][0], domain))
        for (_, before), (at, after) in zip(points, points[1:], strict=False):
            if after > before:
                markers.append((at, domain))
    return sorted(markers)


def redis_drift_markers(redis_url: str, window_s: float, timeout: float = 0.5) -> list[tuple[float, str]] | None:
    """(time, domain) of the drift markers learn-one keeps in Redis (coelho:<domain>:model:<model>:drift, a sorted
    set of JSON members with t_ms), newest window only; None when Redis cannot be read."""
    import json

    import redis

    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
        since_ms = (time.time() - window_s) * 1000
        markers: list[tuple[float, str]] = []
        for key in client.scan_iter(match="coelho:*:model:*:drift", count=100):
            domain = key.decode().split(":")[1]
            for member in client.zrange(key, -200, -1):
                marker = json.loads(member)  # type: ignore[arg-type]
                if float(marker.get("t_ms", 0)) >= since_ms:
                    markers.append((float(marker["t_ms"]) / 1000, domain))
        client.close()
        return sorted(markers)
    except (redis.RedisError, OSError, ValueError, KeyError):
        return None


@dataclass
class Snapshot:
    """Everything the page draws at one refresh."""

    source: str
    charts: dict[str, dict[str, list[Point]]]
    targets: dict[str, bool]
    drift: list[tuple[float, str]]
    errors: list[str]
    drift_from: str = ""


NONE_SERIES = "none"  # the line of a zero_when_empty chart when nothing happened


class ObservabilityData:
    """Chooses Prometheus when it answers, else scrapes the services, and collects one `Snapshot` per refresh."""

    def _zero_line(self, source: MetricsSource) -> list[Point]:
        """A line at 0 over the time the source has data for (the last minute before its first sample)."""
        now = time.time()
        try:
            start = source.earliest(self.window_s)
        except (requests.RequestException, KeyError, ValueError):
            start = None
        return [(start if start is not None and start < now else now - 60.0, 0.0), (now, 0.0)]

    def __init__(self, settings: Any, window_s: float = 900.0) -> None:
        self.settings = settings
        self.window_s = window_s
        self.prometheus = PrometheusSource(settings.url("prometheus")) if "prometheus" in settings.ports else None
        self.scraper = ScrapeSource(metrics_endpoints(settings))

    def source(self) -> MetricsSource:
        if self.prometheus is not None and self.prometheus.is_up():
            return self.prometheus
        self.scraper.scrape()
        return self.scraper

    def snapshot(self, charts: Sequence[Chart] = CHARTS) -> Snapshot:
        source = self.source()
        errors: list[str] = []
        drawn: dict[str, dict[str, list[Point]]] = {}
        for chart in charts:
            lines: dict[str, list[Point]] = {}
            failed = False
            for query in chart.queries:
                try:
                    lines.update(source.series(query, self.window_s))
                except (requests.RequestException, KeyError, ValueError) as exc:
                    failed = True
                    errors.append(f"{chart.title}: {exc}")
            if chart.zero_when_empty and not failed and not any(lines.values()):
                lines = {NONE_SERIES: self._zero_line(source)}
            drawn[chart.title] = lines
        try:
            targets = source.targets()
        except (requests.RequestException, KeyError, ValueError) as exc:
            targets = {}
            errors.append(f"targets: {exc}")
        markers = (
            redis_drift_markers(self.settings.redis_url, self.window_s) if hasattr(self.settings, "redis_url") else None
        )
        drift_from = "learn-one's markers in Redis"
        if markers is None:
            drift_from = "coelho_drift_detected_total"
            try:
                markers = drift_markers(source, self.window_s)
            except (requests.RequestException, KeyError, ValueError) as exc:
                markers = []
                errors.append(f"drift: {exc}")
        return Snapshot(source.name, drawn, targets, markers, errors, drift_from)


# --- the Panel page ----------------------------------------------------------------------------------------
DRIFT_CHARTS = ("Events per second", "Drift detections")  # charts that carry the drift markers
LEGEND_COLUMNS = 3
LEGEND_ROW_CHARS = 54  # label characters that fit one legend row of a half-width chart at 1280 px


def legend_columns(labels: Sequence[str]) -> int:
    """How many legend columns fit a half-width chart for these labels: three short ones, fewer long ones.

    >>> legend_columns(["p50", "p95", "p99"]), legend_columns(["lag coelho-kafkasource-ecci"] * 3)
    (3, 1)
    """
    longest = max((len(label) + 6 for label in labels), default=1)  # the line glyph and spacing: ~6 characters
    return max(1, min(LEGEND_COLUMNS, LEGEND_ROW_CHARS // longest))


PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")


class LiveChart:
    """One chart that stays on the page: a refresh updates its data sources in place.

    Rebuilding the five figures every refresh (as this page first did) made the Bokeh server re-send and the
    browser re-lay-out every plot each time, which slowed every other open page of the dashboard.
    """

    def __init__(self, chart: Chart) -> None:
        from bokeh.plotting import figure

        self.chart = chart
        self.figure = figure(
            title=f"{chart.title} (no data yet)",
            x_axis_type="datetime",
            height=260,
            sizing_mode="stretch_width",
            y_axis_label=chart.unit,
            toolbar_location=None,
        )
        self.sources: dict[str, Any] = {}
        self.spans: set[float] = set()
        self.legend: Any = None

    def title_for(self, lines: Mapping[str, list[Point]]) -> str:
        """The chart's title; "(no data yet)" only while it draws no point at all.

        >>> chart = LiveChart(CHARTS[0])
        >>> chart.title_for({}), chart.title_for({"learned tfd": [(1.0, 0.0)]})
        ('Events per second (no data yet)', 'Events per second')
        """
        return self.chart.title if any(lines.values()) else f"{self.chart.title} (no data yet)"

    def update(self, lines: Mapping[str, list[Point]], drift: Sequence[tuple[float, str]]) -> None:
        """Redraw with these lines and drift markers. Changes the Bokeh document: call it holding the document's
        lock (a Bokeh server callback, e.g. through `Document.add_next_tick_callback`)."""
        from bokeh.models import ColumnDataSource, Legend, LegendItem, Span  # type: ignore[attr-defined]

        title = self.title_for(lines)
        heading: Any = self.figure.title
        if heading.text != title:
            heading.text = title
        for name, points in sorted(lines.items()):
            data = {"x": [t * 1000 for t, _ in points], "y": [v for _, v in points]}
            source = self.sources.get(name)
            if source is not None:
                source.data = data
                continue
            if not points:
                continue
            source = self.sources[name] = ColumnDataSource(data)
            colour = PALETTE[(len(self.sources) - 1) % len(PALETTE)]
            renderer = self.figure.line("x", "y", source=source, line_width=2, color=colour)
            if self.legend is None:  # below the plot, never over its lines
                self.legend = Legend(
                    items=[],
                    location="top_left",
                    orientation="horizontal",
                    label_text_font_size="9pt",
                    ncols=LEGEND_COLUMNS,
                    border_line_alpha=0,
                    margin=2,
                    padding=2,
                    spacing=10,
                )
                self.figure.add_layout(self.legend, "below")
            self.legend.items = [*self.legend.items, LegendItem(label=name, renderers=[renderer])]
            self.legend.ncols = legend_columns(list(self.sources))
        for name in set(self.sources) - set(lines):  # a series that disappeared keeps its line, emptied
            self.sources[name].data = {"x": [], "y": []}
        for at, _domain in drift:
            if at not in self.spans:
                self.spans.add(at)
                self.figure.add_layout(
                    Span(location=at * 1000, dimension="height", line_color="#d62728", line_dash="dashed")
                )


def _figure(chart: Chart, lines: Mapping[str, list[Point]], drift: Sequence[tuple[float, str]]) -> Any:
    """A figure of `chart` with these lines and drift markers (for one-off rendering and tests)."""
    live = LiveChart(chart)
    live.update(lines, drift)
    return live.figure


def snapshot_context(snap: Snapshot | None) -> dict[str, Any]:
    """What the assistant is told the Observability page shows: the metrics source, targets down, the latest value
    of every line of every chart, recent drift markers and collection errors (compact: latest values only)."""
    out: dict[str, Any] = {"page": "observability"}
    if snap is None:
        out["status"] = "collecting metrics, nothing shown yet"
        return out
    out["source"] = snap.source
    out["targets_down"] = sorted(job for job, ok in snap.targets.items() if not ok)
    out["targets_up"] = sorted(job for job, ok in snap.targets.items() if ok)
    out["latest"] = {
        title: {name: round(points[-1][1], 4) for name, points in sorted(lines.items()) if points}
        for title, lines in snap.charts.items()
    }
    out["drift_markers"] = [
        {"domain": domain, "at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at))} for at, domain in snap.drift[-10:]
    ]
    if snap.errors:
        out["errors"] = snap.errors[:5]
    return out


def page(settings: Any, refresh_ms: int = 5000) -> Any:
    """The Observability page as a Panel viewable (see `page_and_context`)."""
    return page_and_context(settings, refresh_ms)[0]


def page_and_context(settings: Any, refresh_ms: int = 5000) -> tuple[Any, Callable[[], dict[str, Any]]]:
    """The Observability page as a Panel viewable, refreshing itself every `refresh_ms` while it is open, and the
    chat context of what it shows now (`snapshot_context` of its last refresh).

    The HTTP queries and scrapes of a refresh run in a worker thread: the Bokeh server's event loop, which serves
    every open page of the dashboard, never waits on Prometheus or a slow /metrics endpoint.
    """
    import asyncio

    import panel as pn

    data = ObservabilityData(settings)
    shown: list[Snapshot] = []  # the last refresh's snapshot, for the chat context
    header = pn.pane.Markdown("## Observability", margin=(0, 10))
    status = pn.pane.Markdown("Collecting metrics...", margin=(0, 10))
    targets = pn.pane.Markdown("", margin=(0, 10))
    drift_list = pn.pane.Markdown("", margin=(0, 10))
    charts = {chart.title: LiveChart(chart) for chart in CHARTS}
    plots = {title: pn.pane.Bokeh(live.figure, sizing_mode="stretch_width") for title, live in charts.items()}
    busy = threading.Lock()

    def collect() -> Snapshot:
        return data.snapshot()

    def show(snap: Snapshot) -> None:
        shown[:] = [snap]
        status.object = f"Source: **{snap.source}**, refreshed {time.strftime('%H:%M:%S')}" + (
            "  \n" + "  \n".join(f"⚠ {e}" for e in snap.errors[:3]) if snap.errors else ""
        )
        targets.object = "Targets: " + (
            ", ".join(f"{job} {'up' if ok else '**down**'}" for job, ok in sorted(snap.targets.items())) or "none"
        )
        drift_list.object = f"Drift markers (from {snap.drift_from}): " + (
            ", ".join(f"{d} at {time.strftime('%H:%M:%S', time.localtime(t))}" for t, d in snap.drift[-10:])
            or "no drift detected in the last 15 minutes"
        )
        for title, live in charts.items():
            live.update(snap.charts.get(title, {}), snap.drift if title in DRIFT_CHARTS else [])

    async def refresh() -> None:
        if not busy.acquire(blocking=False):  # the previous refresh is still running: skip this tick
            return
        try:
            snap = await asyncio.to_thread(collect)
        finally:
            busy.release()
        # After the await this coroutine no longer holds the document's lock, and a change to a Bokeh model
        # without it raises (the charts' titles then stayed "(no data yet)"): draw in a callback that holds it.
        doc = pn.state.curdoc
        if doc is not None and getattr(doc, "session_context", None) is not None:
            doc.add_next_tick_callback(lambda: show(snap))
        else:
            show(snap)

    layout = pn.Column(
        header,
        status,
        targets,
        drift_list,
        pn.GridBox(*plots.values(), ncols=2, sizing_mode="stretch_width"),
        sizing_mode="stretch_width",
        name="Observability",
    )

    def start() -> None:
        pn.state.execute(refresh)
        pn.state.add_periodic_callback(refresh, period=refresh_ms)  # type: ignore[arg-type]  # stopped with the session

    pn.state.onload(start)
    return layout, lambda: snapshot_context(shown[-1] if shown else None)
