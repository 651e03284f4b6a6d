"""Maps on coordinate axes: named points and routes (`PointMap`), and the fraud map of recent transactions
coloured by their predicted risk (`TransactionMap`, `risk_color`). Drawn in degrees over an offline basemap, or in
Web Mercator over tiles when COELHO_TILE_URL is set.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eventing.domains.tfd import risk_level
from ui.charts import AMBER, BLUE, GREEN, GREY, RED, RISK_ZONES, bm, figure, style_figure


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
    style_figure(fig)
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
