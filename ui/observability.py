"""The Observability page: live events/s, latency percentiles, errors, lag and drift markers.

Each chart is declared once as a `ChartQuery` (ui/observability_charts.py). The same declaration runs against
Prometheus's HTTP API when Prometheus is up, and otherwise straight against the services' /metrics endpoints
(ui/metrics_sources.py). `ObservabilityData` collects one `Snapshot` per refresh; the dashboard mounts
`page(settings)`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from ui.metrics_sources import MetricsSource, PrometheusSource, ScrapeSource, metrics_endpoints
from ui.observability_charts import CHARTS, DRIFT, Chart, ChartQuery, Point


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

    from functions.model_state.keys import model_key

    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
        since_ms = (time.time() - window_s) * 1000
        markers: list[tuple[float, str]] = []
        for key in client.scan_iter(match=model_key("*", "*", "drift"), count=100):
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
