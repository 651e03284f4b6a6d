"""Bokeh figures of the dashboard: the fraud gauge, maps on coordinate axes, heatmaps, metric and bar charts.

Every figure is built once per page and then updated through its ColumnDataSource, so a refresh sends only
the new numbers to the browser.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import bokeh.models as _bokeh_models
from bokeh.plotting import figure as _bokeh_figure

from eventing.domains.tfd import RISK_LEVELS, risk_level

# Bokeh's type stubs reject its own documented shorthands (x_range=[...], bm.Range1d(a, b)): type them as Any.
figure: Any = _bokeh_figure
bm: Any = _bokeh_models

GREEN, AMBER, RED = "#2e9d5b", "#f0a202", "#d1382f"
BLUE, GREY = "#2563eb", "#9ca3af"
PALETTE = ("#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#475569")

# Fraud risk zones of the gauge: predict-one's risk levels (eventing/domains/tfd.py), in capitals, with a colour.
RISK_ZONES = tuple(
    (level.upper(), low, high, color)
    for (level, low, high), color in zip(RISK_LEVELS, (GREEN, AMBER, RED), strict=True)
)


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
    """A half-circle gauge of the fraud probability with LOW / MEDIUM / HIGH zones and a needle.

    Drawn as inline SVG in one HTML pane (ADR 0073): the Bokeh figure it replaces was ~75 models (a third of
    the fraud page's) and ~0.2-0.4 s of every page build; an update is now one small text change.
    """

    WIDTH, HEIGHT = 440, 275

    def __init__(self) -> None:
        import panel as pn

        # As wide as its column allows, up to WIDTH: the SVG scales with its viewBox (never cut off at the right).
        self.pane = pn.pane.HTML(
            "",
            max_width=self.WIDTH,
            height=self.HEIGHT,
            margin=0,
            sizing_mode="stretch_width",
            align="center",
            css_classes=["fraud-gauge"],
        )
        self.update(None)

    @staticmethod
    def _xy(p: float, r: float) -> tuple[float, float]:
        a = _angle(p)
        return round(r * math.cos(a), 2), round(-r * math.sin(a), 2)  # SVG y grows downwards

    def svg(self, probability: float | None) -> str:
        outer, inner = 100.0, 62.0
        parts = []
        for name, low, high, color in RISK_ZONES:
            (x0, y0), (x1, y1) = self._xy(low, outer), self._xy(high, outer)
            (x2, y2), (x3, y3) = self._xy(high, inner), self._xy(low, inner)
            parts.append(
                f"<path d='M{x0},{y0} A{outer},{outer} 0 0 1 {x1},{y1} L{x2},{y2} A{inner},{inner} 0 0 0 {x3},{y3} Z' "
                f"fill='{color}' fill-opacity='0.9'/>"
            )
            mid = (low + high) / 2
            mx, my = self._xy(mid, 81)
            rotate = round(90 - math.degrees(_angle(mid)), 1)
            parts.append(
                f"<text x='{mx}' y='{my}' transform='rotate({rotate} {mx} {my})' text-anchor='middle' "
                f"dominant-baseline='middle' font-size='7' font-weight='700' fill='#fff'>{name}</text>"
            )
        for t in (RISK_ZONES[0][1], *(high for _, _, high, _ in RISK_ZONES)):
            tx, ty = self._xy(t, 52)
            parts.append(
                f"<text x='{tx}' y='{ty}' text-anchor='middle' dominant-baseline='middle' font-size='6' "
                f"fill='#6b7280'>{t:.0%}</text>"
            )
        if probability is None:
            text, color, needle = "no prediction yet", GREY, ""
        else:
            p = min(max(probability, 0.0), 1.0)
            level = risk_level(p).upper()
            color = {name: c for name, _, _, c in RISK_ZONES}[level]
            text = f"{p:.1%} · {level}"
            nx, ny = self._xy(p, 82)
            needle = (
                f"<line x1='0' y1='0' x2='{nx}' y2='{ny}' stroke='#111827' stroke-width='4' stroke-linecap='round'/>"
            )
        parts.append(needle)
        parts.append("<circle cx='0' cy='0' r='6' fill='#111827'/>")
        parts.append(
            f"<text x='0' y='30' text-anchor='middle' font-size='12.5' font-weight='700' fill='{color}' "
            f"class='gauge-label'>{text}</text>"
        )
        return (
            f"<svg viewBox='-120 -108 240 150' width='100%' height='{self.HEIGHT - 10}' role='img' "
            f"aria-label='fraud probability gauge' style='font-family:inherit'>{''.join(parts)}</svg>"
        )

    def update(self, probability: float | None) -> None:
        self.pane.object = self.svg(probability)


# --- maps on coordinate axes ---------------------------------------------------------------------------
def tile_url() -> str | None:
    """The tile server to draw under maps (COELHO_TILE_URL, e.g. https://tile.openstreetmap.org/{Z}/{X}/{Y}.png)."""
    return os.environ.get("COELHO_TILE_URL") or None


def _mercator(lat: float, lon: float) -> tuple[float, float]:
    k = 6378137.0
    x = math.radians(lon) * k
    y = math.log(math.tan(math.pi / 4 + math.radians(max(min(lat, 85.0), -85.0)) / 2)) * k
    return x, y


BASEMAP_FILE = Path(__file__).parent / "data" / "basemap_110m.json"  # Natural Earth 1:110m (ui/data/README.md)
OCEAN, LAND, BORDER = "#dcebf7", "#f8fafc", "#9fb0c2"
MIN_MAP_SPAN_DEG = 0.5  # the least a map shows (with the basemap): enough for a coast or a city nearby


@functools.lru_cache(maxsize=1)
def basemap() -> dict[str, dict[str, list[Any]]]:
    """The offline basemap as column data: every country ring (`countries`: xs, ys, name) and the major cities
    (`cities`: x, y, name), in degrees.

    >>> data = basemap()
    >>> len(data["countries"]["xs"]) > 200, "Paris" in data["cities"]["name"]
    (True, True)
    """
    raw = json.loads(BASEMAP_FILE.read_text(encoding="utf-8"))
    xs: list[list[float]] = []
    ys: list[list[float]] = []
    names: list[str] = []
    for country in raw["countries"]:
        for ring in country["rings"]:
            xs.append([p[0] for p in ring])
            ys.append([p[1] for p in ring])
            names.append(country["name"])
    cities = raw["cities"]
    return {
        "countries": {"xs": xs, "ys": ys, "name": names},
        "cities": {
            "x": [c["lon"] for c in cities],
            "y": [c["lat"] for c in cities],
            "name": [c["name"] for c in cities],
        },
    }


def add_basemap(fig: Any) -> None:
    """Countries (their coasts too) and major cities under a map's data, for when there are no tiles."""
    data = basemap()
    fig.background_fill_color = OCEAN
    fig.patches(
        "xs",
        "ys",
        source=bm.ColumnDataSource(dict(data["countries"])),
        fill_color=LAND,
        line_color=BORDER,
        line_width=0.8,
        name="basemap-countries",
    )
    cities = bm.ColumnDataSource(dict(data["cities"]))
    dots = fig.scatter("x", "y", source=cities, size=5, color="#64748b", alpha=0.8, name="basemap-cities")
    fig.add_tools(bm.HoverTool(renderers=[dots], tooltips=[("city", "@name")]))


def map_figure(title: str, height: int, tiles: str | None) -> Any:
    """A map figure: Web Mercator over tiles when a tile URL is configured, else degrees over the basemap."""
    fig = figure(
        title=title,
        height=height,
        sizing_mode="stretch_width",
        tools="pan,wheel_zoom,reset",
        active_scroll=None,
        match_aspect=True,
        x_range=bm.Range1d(-1, 1),
        y_range=bm.Range1d(-1, 1),
        x_axis_type="mercator" if tiles else "linear",
        y_axis_type="mercator" if tiles else "linear",
    )
    _style(fig)
    if tiles:
        fig.add_tile(bm.WMTSTileSource(url=tiles, attribution="Map tiles"))
    else:
        add_basemap(fig)
        fig.xaxis.axis_label = "longitude (°)"
        fig.yaxis.axis_label = "latitude (°)"
        fig.xgrid.grid_line_color = "#c9d6e3"
        fig.ygrid.grid_line_color = "#c9d6e3"
        fig.xgrid.grid_line_alpha = fig.ygrid.grid_line_alpha = 0.6
    return fig


def fit_ranges(fig: Any, xs: Sequence[float], ys: Sequence[float], min_span: float, room: float = 0.35) -> None:
    """Show every point with `room` (a share of the span) around it, at least `min_span` across, wider than high."""
    if not xs:
        return
    span = max(max(xs) - min(xs), max(ys) - min(ys), min_span)
    half = span / 2 + span * room
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    fig.x_range.start, fig.x_range.end = cx - half * 1.6, cx + half * 1.6
    fig.y_range.start, fig.y_range.end = cy - half, cy + half


class PointMap:
    """Named points (and optionally a route between the first two) on a map.

    No tile server is needed: without one, points and route are drawn in degrees over an offline basemap (Natural
    Earth's countries, coasts and major cities, shipped in ui/data). When COELHO_TILE_URL is set, the same points
    are drawn in Web Mercator over those tiles.
    """

    def __init__(self, title: str, route: bool = False, height: int = 340) -> None:
        self.tiles = tile_url()
        fig = map_figure(title, height, self.tiles)
        self.route = bm.ColumnDataSource({"x": [], "y": []})
        if route:
            fig.line("x", "y", source=self.route, line_width=4, line_color=BLUE, line_alpha=0.75, line_dash="solid")
        self.points = bm.ColumnDataSource({"x": [], "y": [], "name": [], "color": [], "lat": [], "lon": []})
        renderer = fig.scatter(
            "x", "y", source=self.points, size=18, color="color", line_color="white", line_width=2, marker="circle"
        )
        fig.add_layout(
            bm.LabelSet(
                x="x",
                y="y",
                text="name",
                source=self.points,
                x_offset=12,
                y_offset=6,
                text_font_size="12px",
                text_color="#111827",
                text_font_style="bold",
            )
        )
        fig.add_tools(
            bm.HoverTool(
                renderers=[renderer], tooltips=[("", "@name"), ("lat", "@lat{0.0000}"), ("lon", "@lon{0.0000}")]
            )
        )
        self.figure = fig

    def update(self, points: Sequence[tuple[str, float, float, str]]) -> None:
        """Draw `points` as (name, lat, lon, color); with route=True a line joins them in order."""
        valid = [(n, la, lo, c) for n, la, lo, c in points if la is not None and lo is not None]
        xy = [_mercator(la, lo) if self.tiles else (lo, la) for _, la, lo, _ in valid]
        self.points.data = {
            "x": [p[0] for p in xy],
            "y": [p[1] for p in xy],
            "name": [v[0] for v in valid],
            "color": [v[3] for v in valid],
            "lat": [v[1] for v in valid],
            "lon": [v[2] for v in valid],
        }
        self.route.data = {"x": [p[0] for p in xy], "y": [p[1] for p in xy]}
        fit_ranges(self.figure, [p[0] for p in xy], [p[1] for p in xy], 20000.0 if self.tiles else MIN_MAP_SPAN_DEG)


def _mix(a: str, b: str, t: float) -> str:
    """The colour a share `t` of the way from hex colour `a` to `b`."""
    ca, cb = (tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in (a, b))
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(ca, cb, strict=True))


# The fraud map's colour scale of the predicted fraud probability: the gauge's zone colours, green at 0, amber at
# 0.5 (the middle of MEDIUM), red at 1. RISK_PALETTE[i] is the colour of probabilities around i / 255.
RISK_STOPS = ((0.0, GREEN), (0.5, AMBER), (1.0, RED))


def _scale(stops: Sequence[tuple[float, str]], n: int = 256) -> tuple[str, ...]:
    """`n` colours from 0 to 1 through the (position, colour) `stops`."""
    out = []
    for i in range(n):
        p = i / (n - 1)
        (p0, c0), (p1, c1) = next((a, b) for a, b in zip(stops, stops[1:], strict=False) if p <= b[0])
        out.append(_mix(c0, c1, (p - p0) / (p1 - p0)))
    return tuple(out)


RISK_PALETTE = _scale(RISK_STOPS)


def risk_color(probability: float | None) -> str:
    """The fraud map's colour of a predicted fraud probability (grey: not scored).

    >>> risk_color(0.0) == GREEN, risk_color(1.0) == RED, risk_color(0.5) == AMBER, risk_color(None) == GREY
    (True, True, True, True)
    """
    if probability is None or not math.isfinite(probability):
        return GREY
    return RISK_PALETTE[round(min(max(probability, 0.0), 1.0) * (len(RISK_PALETTE) - 1))]


class TransactionMap:
    """Where transactions happen, coloured by risk: the recent transactions of the domain's log filled with the
    colour of the fraud probability the live champion gives each (a colour bar reads it), a dark ring around those
    labelled fraud and a white one around those labelled legit (no ring: the label has not arrived), and the
    transaction of the Predict form as a diamond in its predicted risk zone's colour."""

    FRAUD_RING, LEGIT_RING = "#111827", "#ffffff"

    def __init__(self, title: str = "", height: int = 400) -> None:
        self.tiles = tile_url()
        fig = map_figure(title, height, self.tiles)
        self.recent = bm.ColumnDataSource(
            {"x": [], "y": [], "color": [], "ring": [], "ring_width": [], "risk": [], "label": [], "amount": []}
        )
        dots = fig.scatter(
            "x",
            "y",
            source=self.recent,
            size=9,
            fill_color="color",
            fill_alpha=0.85,
            line_color="ring",
            line_width="ring_width",
            name="transactions",
        )
        self.current = bm.ColumnDataSource({"x": [], "y": [], "color": [], "label": []})
        fig.scatter(
            "x",
            "y",
            source=self.current,
            size=16,
            marker="diamond",
            color="color",
            line_color="#111827",
            line_width=1.5,
            name="this-transaction",
        )
        fig.add_tools(
            bm.HoverTool(
                renderers=[dots],
                tooltips=[("fraud probability", "@risk"), ("label", "@label"), ("amount", "@amount{0,0.00}")],
            )
        )
        mapper = bm.LinearColorMapper(palette=list(RISK_PALETTE), low=0.0, high=1.0)
        fig.add_layout(
            bm.ColorBar(
                color_mapper=mapper,
                title="predicted fraud probability (live champion)",
                ticker=bm.FixedTicker(ticks=[0.0, 0.3, 0.5, 0.7, 1.0]),
                formatter=bm.NumeralTickFormatter(format="0%"),
                orientation="horizontal",
                height=10,
                name="risk-colour-bar",
            ),
            "below",
        )
        self.figure = fig
        self._fitted = False

    def _xy(self, lat: float, lon: float) -> tuple[float, float]:
        return _mercator(lat, lon) if self.tiles else (lon, lat)

    def update(self, transactions: Sequence[Mapping[str, Any]]) -> None:
        """`transactions`: dicts with lat, lon, risk (the predicted fraud probability, None: not scored), is_fraud
        (the label: bool, or None before it arrives) and amount. Drawn by rising risk: where transactions overlap
        (the same city) the riskiest is on top."""
        transactions = sorted(transactions, key=lambda t: -1.0 if t.get("risk") is None else float(t["risk"]))
        xy = [self._xy(float(t["lat"]), float(t["lon"])) for t in transactions]
        risks = [t.get("risk") for t in transactions]
        labels = [t.get("is_fraud") for t in transactions]
        self.recent.data = {
            "x": [p[0] for p in xy],
            "y": [p[1] for p in xy],
            "color": [risk_color(r) for r in risks],
            "ring": [self.LEGIT_RING if y is None else self.FRAUD_RING if y else self.LEGIT_RING for y in labels],
            "ring_width": [0.0 if y is None else 2.5 if y else 1.0 for y in labels],
            "risk": ["not scored" if r is None else f"{r:.1%}" for r in risks],
            "label": ["not arrived yet" if y is None else "fraud" if y else "legit" for y in labels],
            "amount": [float(t.get("amount") or 0.0) for t in transactions],
        }
        if xy and not self._fitted:  # once: afterwards the person's pan and zoom stay
            self._fitted = True
            fit_ranges(self.figure, [p[0] for p in xy], [p[1] for p in xy], MIN_MAP_SPAN_DEG, room=0.05)

    def show_transaction(self, lat: float | None, lon: float | None, probability: float | None) -> None:
        """The Predict form's transaction, in the colour of its risk zone (grey before a prediction)."""
        if lat is None or lon is None:
            self.current.data = {"x": [], "y": [], "color": [], "label": []}
            return
        x, y = self._xy(lat, lon)
        if probability is None:
            color, label = GREY, "this transaction"
        else:
            level = risk_level(probability).upper()
            color, label = {n: c for n, _, _, c in RISK_ZONES}[level], f"this transaction: {level} risk"
        self.current.data = {"x": [x], "y": [y], "color": [color], "label": [label]}


# --- heatmaps and bars ---------------------------------------------------------------------------------
class ConfusionMatrixChart:
    """A 2x2 (or n x n) confusion matrix heatmap: rows are the truth, columns the prediction."""

    def __init__(self, labels: Sequence[str] = ("legit", "fraud")) -> None:
        self.labels = [str(x) for x in labels]
        fig = figure(
            title="rows: actual class · columns: predicted class",
            height=300,
            sizing_mode="stretch_width",
            x_range=self.labels,
            y_range=list(reversed(self.labels)),
            toolbar_location=None,
            tools="",
        )
        _style(fig)
        fig.grid.visible = False
        fig.xaxis.axis_label = "predicted"
        fig.yaxis.axis_label = "actual"
        self.source = bm.ColumnDataSource({"pred": [], "true": [], "count": [], "color": [], "text": [], "tc": []})
        fig.rect("pred", "true", 0.96, 0.96, source=self.source, color="color")
        fig.text(
            "pred",
            "true",
            "text",
            source=self.source,
            text_align="center",
            text_baseline="middle",
            text_font_size="16px",
            text_font_style="bold",
            text_color="tc",
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
            "pred": [p for _, p, _ in cells],
            "true": [t for t, _, _ in cells],
            "count": [c for *_, c in cells],
            "color": colors,
            "text": [f"{int(c):,}" for *_, c in cells],
            "tc": text_colors,
        }


class BarChart:
    """Vertical bars over categories, updated in place (cluster sizes, top values)."""

    def __init__(self, title: str, height: int = 260, color: str = BLUE, y_label: str = "", x_label: str = "") -> None:
        fig = figure(
            title=title,
            height=height,
            sizing_mode="stretch_width",
            x_range=[],
            toolbar_location=None,
            tools="",
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
            "x": keys,
            "y": [float(v) for v in values.values()],
            "color": list(colors) if colors else [self.color] * len(keys),
        }


class HtmlBars:
    """Horizontal bars drawn as HTML in one pane (the E-commerce "cluster behaviour" on the Predict tab).

    Same API as BarChart.update; a new prediction is one text change, not a Bokeh re-layout (ADR 0073).
    """

    def __init__(self, color: str = BLUE) -> None:
        import panel as pn

        self.color = color
        self.label = ""
        self.pane = pn.pane.HTML("", sizing_mode="stretch_width", margin=(4, 10), css_classes=["html-bars"])

    def update(self, values: Mapping[str, float], colors: Sequence[str] | None = None) -> None:
        import html

        if not values:
            self.pane.object = ""
            return
        top = max((abs(float(v)) for v in values.values()), default=0.0) or 1.0
        rows = []
        for i, (key, value) in enumerate(values.items()):
            v = float(value)
            color = colors[i % len(colors)] if colors else self.color
            shown = f"{v:.1%}" if 0 <= v <= 1 and self.label.startswith("share") else f"{v:,.2f}"
            rows.append(
                "<div style='display:flex;align-items:center;gap:8px;margin:3px 0;font-size:12px'>"
                f"<span style='width:34%;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;color:#374151'>{html.escape(str(key))}</span>"
                f"<span style='flex:1;background:#f3f4f6;border-radius:4px;height:14px'><span style='display:block;height:14px;"
                f"border-radius:4px;width:{max(1.0, 100 * abs(v) / top):.1f}%;background:{color}'></span></span>"
                f"<span style='width:64px;text-align:right;font-variant-numeric:tabular-nums'>{shown}</span></div>"
            )
        caption = f"<div style='font-size:11px;color:#6b7280'>{html.escape(self.label)}</div>" if self.label else ""
        self.pane.object = caption + "".join(rows)


class StackedBarChart:
    """Stacked bars: one bar per group (cluster), stacked by category (a feature's values)."""

    def __init__(self, title: str, height: int = 300, x_label: str = "") -> None:
        self.title = title
        self.x_label = x_label
        self.height = height
        self.figure = self._empty()

    def _empty(self) -> Any:
        fig = figure(
            title=self.title,
            height=self.height,
            sizing_mode="stretch_width",
            x_range=[],
            toolbar_location=None,
            tools="",
        )
        _style(fig)
        return fig

    def build(self, groups: Sequence[str], shares: Mapping[str, Sequence[float]]) -> Any:
        """A new figure: `shares[category][i]` is the share of `category` in `groups[i]`."""
        fig = figure(
            title=self.title,
            height=self.height,
            sizing_mode="stretch_width",
            x_range=list(groups),
            toolbar_location=None,
            tools="hover",
            tooltips="$name: @$name{0.0%}",
        )
        _style(fig)
        fig.xgrid.visible = False
        cats = list(shares)
        data: dict[str, Any] = {"group": list(groups)}
        data.update({c: list(v) for c, v in shares.items()})
        if cats:
            fig.vbar_stack(
                cats,
                x="group",
                width=0.7,
                source=bm.ColumnDataSource(data),
                color=[PALETTE[i % len(PALETTE)] for i in range(len(cats))],
                legend_label=cats,
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
            title=name,
            height=height,
            sizing_mode="stretch_width",
            toolbar_location=None,
            tools="",
        )
        _style(fig)
        fig.xaxis.axis_label = "events learned"
        self.source = bm.ColumnDataSource({"x": [], "y": []})
        fig.line("x", "y", source=self.source, line_width=2, color=color)
        fig.add_tools(bm.HoverTool(tooltips=[("events", "@x{0,0}"), (name, "@y{0.0000}")], mode="vline"))
        self.figure = fig
        self._spans: dict[float, bm.Span] = {}  # one marker per drift position ever shown, hidden when gone

    @property
    def drifts(self) -> list[float]:
        """The drift positions marked now."""
        return sorted(at for at, span in self._spans.items() if span.visible)

    def update(self, xs: Sequence[float], ys: Sequence[float], drifts: Sequence[float] = ()) -> None:
        if list(xs) != list(self.source.data["x"]) or list(ys) != list(self.source.data["y"]):
            self.source.data = {"x": list(xs), "y": list(ys)}  # history grows every ~100 events: send only then
        wanted = set(drifts)
        for at in wanted - set(self._spans):
            self._spans[at] = bm.Span(
                location=at, dimension="height", line_color=RED, line_dash="dashed", line_width=1.5
            )
            self.figure.add_layout(self._spans[at])
        for at, span in self._spans.items():  # a drift no longer in the live data (model reset, restored): unmark
            span.visible = at in wanted  # Bokeh sends a property only when its value changes
