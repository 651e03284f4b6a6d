"""Bokeh figures of the dashboard: the fraud gauge, maps on coordinate axes, heatmaps, metric and bar charts.

Every figure is built once per page and then updated through its ColumnDataSource, so a refresh sends only
the new numbers to the browser.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import bokeh.models as _bokeh_models
from bokeh.plotting import figure as _bokeh_figure

# Bokeh's type stubs reject its own documented shorthands (x_range=[...], bm.Range1d(a, b)): type them as Any.
figure: Any = _bokeh_figure
bm: Any = _bokeh_models

GREEN, AMBER, RED = "#2e9d5b", "#f0a202", "#d1382f"
BLUE, GREY = "#2563eb", "#9ca3af"
PALETTE = ("#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#475569")

# Fraud risk zones, as predict-one labels them: low < 30% <= medium < 70% <= high.
RISK_ZONES = (("LOW", 0.0, 0.3, GREEN), ("MEDIUM", 0.3, 0.7, AMBER), ("HIGH", 0.7, 1.0, RED))


def risk_level(probability: float) -> str:
    """LOW, MEDIUM or HIGH for a fraud probability.

    >>> risk_level(0.1), risk_level(0.3), risk_level(0.7)
    ('LOW', 'MEDIUM', 'HIGH')
    """
    for name, low, high, _ in RISK_ZONES:
        if low <= probability < high:
            return name
    return "HIGH"


def _style(fig: Any) -> Any:
    fig.toolbar.logo = None
    fig.outline_line_color = None
    fig.background_fill_color = "#ffffff"
    fig.border_fill_color = "#ffffff"
    fig.xgrid.grid_line_color = "#eef0f3"
    fig.ygrid.grid_line_color = "#eef0f3"
    fig.axis.axis_line_color = "#d1d5db"
    fig.axis.major_tick_line_color = "#d1d5db"
    fig.axis.minor_tick_line_color = None
    fig.axis.major_label_text_color = "#4b5563"
    fig.title.text_color = "#111827"
    fig.title.text_font_size = "13px"
    return fig


# --- the fraud gauge ----------------------------------------------------------------------------------
def _angle(p: float) -> float:
    return math.pi * (1.0 - p)  # 0 % on the left, 100 % on the right


class FraudGauge:
    """A half-circle gauge of the fraud probability with LOW / MEDIUM / HIGH zones and a needle."""

    def __init__(self) -> None:
        # Fixed size with the same scale on both axes (2.4 x 1.5 units): the wedges' radii are in x units.
        fig = figure(
            x_range=(-1.2, 1.2), y_range=(-0.42, 1.08), width=440, height=275, min_border=0,
            toolbar_location=None, tools="",
        )
        _style(fig)
        fig.axis.visible = False
        fig.grid.visible = False
        # One glyph per kind (wedges, zone names, tick labels): fewer models to send on page load.
        mids = [_angle((low + high) / 2) for _, low, high, _ in RISK_ZONES]
        fig.annular_wedge(
            x=0, y=0, inner_radius=0.62, outer_radius=1.0, alpha=0.9,
            source=bm.ColumnDataSource({
                "start": [_angle(high) for _, _, high, _ in RISK_ZONES],
                "end": [_angle(low) for _, low, _, _ in RISK_ZONES],
                "color": [color for *_, color in RISK_ZONES],
            }),
            start_angle="start", end_angle="end", color="color",
        )
        fig.text(
            x=[0.81 * math.cos(m) for m in mids], y=[0.81 * math.sin(m) for m in mids],
            text=[name for name, *_ in RISK_ZONES], angle=[m - math.pi / 2 for m in mids], text_align="center",
            text_baseline="middle", text_font_size="12px", text_color="#ffffff", text_font_style="bold",
        )
        ticks = (0.0, 0.3, 0.7, 1.0)
        fig.text(
            x=[0.52 * math.cos(_angle(t)) for t in ticks], y=[0.52 * math.sin(_angle(t)) for t in ticks],
            text=[f"{t:.0%}" for t in ticks], text_align="center", text_baseline="middle", text_font_size="10px",
            text_color="#6b7280",
        )
        self.needle = bm.ColumnDataSource({"x0": [0.0], "y0": [0.0], "x1": [0.0], "y1": [0.0]})
        fig.segment("x0", "y0", "x1", "y1", source=self.needle, line_width=4, line_color="#111827")
        fig.scatter([0], [0], size=14, color="#111827")
        self.label = bm.ColumnDataSource({"x": [0.0], "y": [-0.3], "text": ["—"], "color": [GREY]})
        fig.text(
            "x", "y", "text", source=self.label, text_align="center", text_font_size="22px",
            text_font_style="bold", text_color="color",
        )
        self.figure = fig
        self.update(None)

    def update(self, probability: float | None) -> None:
        if probability is None:
            self.needle.data = {"x0": [0.0], "y0": [0.0], "x1": [0.0], "y1": [0.0]}
            self.label.data = {"x": [0.0], "y": [-0.3], "text": ["no prediction yet"], "color": [GREY]}
            return
        p = min(max(probability, 0.0), 1.0)
        a = _angle(p)
        self.needle.data = {"x0": [0.0], "y0": [0.0], "x1": [0.82 * math.cos(a)], "y1": [0.82 * math.sin(a)]}
        level = risk_level(p)
        color = {name: c for name, _, _, c in RISK_ZONES}[level]
        self.label.data = {"x": [0.0], "y": [-0.3], "text": [f"{p:.1%} · {level}"], "color": [color]}


# --- maps on coordinate axes ---------------------------------------------------------------------------
def tile_url() -> str | None:
    """The tile server to draw under maps (COELHO_TILE_URL, e.g. https://tile.openstreetmap.org/{Z}/{X}/{Y}.png)."""
    return os.environ.get("COELHO_TILE_URL") or None


def _mercator(lat: float, lon: float) -> tuple[float, float]:
    k = 6378137.0
    x = math.radians(lon) * k
    y = math.log(math.tan(math.pi / 4 + math.radians(max(min(lat, 85.0), -85.0)) / 2)) * k
    return x, y


class PointMap:
    """Named points (and optionally a route between the first two) on longitude/latitude axes.

    No tile server is needed: points and route are drawn on plain coordinate axes with a grid. When
    COELHO_TILE_URL is set, the same points are drawn in Web Mercator over those tiles.
    """

    def __init__(self, title: str, route: bool = False, height: int = 340) -> None:
        self.tiles = tile_url()
        fig = figure(
            title=title, height=height, sizing_mode="stretch_width", tools="pan,wheel_zoom,reset",
            active_scroll=None, match_aspect=True, x_range=bm.Range1d(-1, 1), y_range=bm.Range1d(-1, 1),
            x_axis_type="mercator" if self.tiles else "linear", y_axis_type="mercator" if self.tiles else "linear",
        )
        _style(fig)
        if self.tiles:
            fig.add_tile(bm.WMTSTileSource(url=self.tiles, attribution="Map tiles"))
        else:
            fig.background_fill_color = "#f3f6fa"
            fig.xaxis.axis_label = "longitude (°)"
            fig.yaxis.axis_label = "latitude (°)"
            fig.xgrid.grid_line_color = "#dbe2ea"
            fig.ygrid.grid_line_color = "#dbe2ea"
        self.route = bm.ColumnDataSource({"x": [], "y": []})
        if route:
            fig.line("x", "y", source=self.route, line_width=4, line_color=BLUE, line_alpha=0.75, line_dash="solid")
        self.points = bm.ColumnDataSource({"x": [], "y": [], "name": [], "color": [], "lat": [], "lon": []})
        renderer = fig.scatter(
            "x", "y", source=self.points, size=18, color="color", line_color="white", line_width=2, marker="circle"
        )
        fig.add_layout(
            bm.LabelSet(
                x="x", y="y", text="name", source=self.points, x_offset=12, y_offset=6, text_font_size="12px",
                text_color="#111827", text_font_style="bold",
            )
        )
        fig.add_tools(bm.HoverTool(renderers=[renderer], tooltips=[("", "@name"), ("lat", "@lat{0.0000}"), ("lon", "@lon{0.0000}")]))
        self.figure = fig

    def update(self, points: Sequence[tuple[str, float, float, str]]) -> None:
        """Draw `points` as (name, lat, lon, color); with route=True a line joins them in order."""
        valid = [(n, la, lo, c) for n, la, lo, c in points if la is not None and lo is not None]
        xy = [_mercator(la, lo) if self.tiles else (lo, la) for _, la, lo, _ in valid]
        self.points.data = {
            "x": [p[0] for p in xy], "y": [p[1] for p in xy], "name": [v[0] for v in valid],
            "color": [v[3] for v in valid], "lat": [v[1] for v in valid], "lon": [v[2] for v in valid],
        }
        self.route.data = {"x": [p[0] for p in xy], "y": [p[1] for p in xy]}
        if not xy:
            return
        xs, ys = [p[0] for p in xy], [p[1] for p in xy]
        span = max(max(xs) - min(xs), max(ys) - min(ys), 20000.0 if self.tiles else 0.02)
        pad = span * 0.35
        cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
        half = span / 2 + pad
        self.figure.x_range.start, self.figure.x_range.end = cx - half * 1.6, cx + half * 1.6
        self.figure.y_range.start, self.figure.y_range.end = cy - half, cy + half


# --- heatmaps and bars ---------------------------------------------------------------------------------
class ConfusionMatrixChart:
    """A 2x2 (or n x n) confusion matrix heatmap: rows are the truth, columns the prediction."""

    def __init__(self, labels: Sequence[str] = ("legit", "fraud")) -> None:
        self.labels = [str(x) for x in labels]
        fig = figure(
            title="rows: actual class · columns: predicted class", height=300, sizing_mode="stretch_width",
            x_range=self.labels, y_range=list(reversed(self.labels)), toolbar_location=None, tools="",
        )
        _style(fig)
        fig.grid.visible = False
        fig.xaxis.axis_label = "predicted"
        fig.yaxis.axis_label = "actual"
        self.source = bm.ColumnDataSource({"pred": [], "true": [], "count": [], "color": [], "text": [], "tc": []})
        fig.rect("pred", "true", 0.96, 0.96, source=self.source, color="color")
        fig.text(
            "pred", "true", "text", source=self.source, text_align="center", text_baseline="middle",
            text_font_size="16px", text_font_style="bold", text_color="tc",
        )
        self.figure = fig
        self.update({})

    def update(self, matrix: Mapping[str, Mapping[str, float]]) -> None:
        cells = [(t, p, float(matrix.get(t, {}).get(p, 0))) for t in self.labels for p in self.labels]
        top = max((c for _, _, c in cells), default=0.0) or 1.0
        colors, text_colors = [], []
        for t, p, c in cells:
            strength = math.sqrt(c / top)
            base = (37, 99, 235) if t == p else (220, 38, 38)
            r, g, b = (int(255 - (255 - v) * (0.12 + 0.88 * strength)) for v in base)
            colors.append(f"#{r:02x}{g:02x}{b:02x}")
            text_colors.append("#ffffff" if strength > 0.55 else "#111827")
        self.source.data = {
            "pred": [p for _, p, _ in cells], "true": [t for t, _, _ in cells], "count": [c for *_, c in cells],
            "color": colors, "text": [f"{int(c):,}" for *_, c in cells], "tc": text_colors,
        }


class BarChart:
    """Vertical bars over categories, updated in place (cluster sizes, top values)."""

    def __init__(self, title: str, height: int = 260, color: str = BLUE, y_label: str = "", x_label: str = "") -> None:
        fig = figure(
            title=title, height=height, sizing_mode="stretch_width", x_range=[], toolbar_location=None, tools="",
        )
        _style(fig)
        fig.xgrid.visible = False
        fig.yaxis.axis_label = y_label
        fig.xaxis.axis_label = x_label
        fig.y_range.start = 0
        self.source = bm.ColumnDataSource({"x": [], "y": [], "color": []})
        fig.vbar(x="x", top="y", width=0.75, source=self.source, color="color")
        fig.add_tools(bm.HoverTool(tooltips=[("", "@x"), ("value", "@y{0,0.[00]}")]))
        self.figure = fig
        self.color = color

    def update(self, values: Mapping[str, float], colors: Sequence[str] | None = None) -> None:
        keys = [str(k) for k in values]
        self.figure.x_range.factors = keys
        self.source.data = {
            "x": keys, "y": [float(v) for v in values.values()],
            "color": list(colors) if colors else [self.color] * len(keys),
        }


class StackedBarChart:
    """Stacked bars: one bar per group (cluster), stacked by category (a feature's values)."""

    def __init__(self, title: str, height: int = 300, x_label: str = "") -> None:
        self.title = title
        self.x_label = x_label
        self.height = height
        self.figure = self._empty()

    def _empty(self) -> Any:
        fig = figure(title=self.title, height=self.height, sizing_mode="stretch_width", x_range=[], toolbar_location=None, tools="")
        _style(fig)
        return fig

    def build(self, groups: Sequence[str], shares: Mapping[str, Sequence[float]]) -> Any:
        """A new figure: `shares[category][i]` is the share of `category` in `groups[i]`."""
        fig = figure(
            title=self.title, height=self.height, sizing_mode="stretch_width", x_range=list(groups),
            toolbar_location=None, tools="hover", tooltips="$name: @$name{0.0%}",
        )
        _style(fig)
        fig.xgrid.visible = False
        cats = list(shares)
        data: dict[str, Any] = {"group": list(groups)}
        data.update({c: list(v) for c, v in shares.items()})
        if cats:
            fig.vbar_stack(
                cats, x="group", width=0.7, source=bm.ColumnDataSource(data),
                color=[PALETTE[i % len(PALETTE)] for i in range(len(cats))], legend_label=cats,
            )
            fig.legend.label_text_font_size = "11px"
            fig.legend.glyph_width = 12
            fig.legend.spacing = 2
            fig.add_layout(fig.legend[0], "right")
        fig.y_range.start = 0
        fig.xaxis.axis_label = self.x_label
        self.figure = fig
        return fig


# --- metric history ------------------------------------------------------------------------------------
class MetricChart:
    """One metric over events learned, with vertical markers where drift was detected."""

    def __init__(self, name: str, color: str = BLUE, height: int = 190) -> None:
        fig = figure(
            title=name, height=height, sizing_mode="stretch_width", toolbar_location=None, tools="",
        )
        _style(fig)
        fig.xaxis.axis_label = "events learned"
        self.source = bm.ColumnDataSource({"x": [], "y": []})
        fig.line("x", "y", source=self.source, line_width=2, color=color)
        fig.add_tools(bm.HoverTool(tooltips=[("events", "@x{0,0}"), (name, "@y{0.0000}")], mode="vline"))
        self.figure = fig
        self.drifts: list[float] = []

    def update(self, xs: Sequence[float], ys: Sequence[float], drifts: Sequence[float] = ()) -> None:
        if list(xs) != list(self.source.data["x"]) or list(ys) != list(self.source.data["y"]):
            self.source.data = {"x": list(xs), "y": list(ys)}  # history grows every ~100 events: send only then
        for at in drifts:
            if at not in self.drifts:
                self.drifts.append(at)
                self.figure.add_layout(bm.Span(location=at, dimension="height", line_color=RED, line_dash="dashed", line_width=1.5))
