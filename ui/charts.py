"""Bokeh figures of the dashboard: the fraud gauge, heatmaps, metric and bar charts (maps: ui/maps.py).

Every figure is built once per page and then updated through its ColumnDataSource, so a refresh sends only
the new numbers to the browser.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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


def style_figure(fig: Any) -> Any:
    """The dashboard's look on a Bokeh figure: no logo or outline, light grid and axes."""
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
        style_figure(fig)
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
        style_figure(fig)
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
        style_figure(fig)
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
        style_figure(fig)
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
        style_figure(fig)
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
