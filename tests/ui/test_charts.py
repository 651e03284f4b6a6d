"""What the fraud gauge, the confusion-matrix heatmap and the maps draw, checked on their data (the browser tests
only look at them in screenshots): zones at the risk boundaries predict-one uses, the needle at the probability,
cells where truth and prediction meet, points where the coordinates say."""

from __future__ import annotations

import math
import re

import pytest

from ui.charts import RISK_ZONES, ConfusionMatrixChart, FraudGauge
from ui.maps import PointMap, _mercator


def _polar(x: float, y: float) -> tuple[float, float]:
    """(radius, probability) of an SVG point of the gauge: 0 % at the left, 100 % at the right (y grows down)."""
    return math.hypot(x, y), 1.0 - math.atan2(-y, x) / math.pi


def test_the_gauge_zones_end_at_30_and_70_percent_and_the_needle_points_at_the_probability() -> None:
    gauge = FraudGauge()
    svg = gauge.svg(0.42)
    paths = re.findall(r"<path d='M([-\d.]+),([-\d.]+) A[\d.]+,[\d.]+ 0 0 1 ([-\d.]+),([-\d.]+) ", svg)
    assert len(paths) == 3
    ends = [p for a, b, c, d in paths for p in (_polar(float(a), float(b))[1], _polar(float(c), float(d))[1])]
    assert ends == pytest.approx([0.0, 0.3, 0.3, 0.7, 0.7, 1.0], abs=1e-3)
    colours = re.findall(r"<path [^>]*fill='(#[0-9a-fA-F]+)'", svg)
    assert colours == [c for *_, c in RISK_ZONES]
    ((x2, y2),) = re.findall(r"<line x1='0' y1='0' x2='([-\d.]+)' y2='([-\d.]+)'", svg)
    assert _polar(float(x2), float(y2))[1] == pytest.approx(0.42, abs=1e-3)
    label = re.search(r"fill='(#[0-9a-fA-F]+)' class='gauge-label'>([^<]+)<", svg)
    assert label is not None and label.group(2) == "42.0% · MEDIUM"
    assert label.group(1) == dict((n, c) for n, _, _, c in RISK_ZONES)["MEDIUM"]
    for p, level in ((0.0, "LOW"), (0.299, "LOW"), (0.3, "MEDIUM"), (0.7, "HIGH"), (1.0, "HIGH"), (1.7, "HIGH")):
        assert f"· {level}<" in gauge.svg(p), p
    empty = gauge.svg(None)
    assert "no prediction yet" in empty and "<line" not in empty
    gauge.update(0.9)
    assert "90.0% · HIGH" in str(gauge.pane.object)


def test_the_confusion_matrix_puts_each_count_where_truth_meets_prediction() -> None:
    chart = ConfusionMatrixChart(("legit", "fraud"))
    chart.update({"legit": {"legit": 900, "fraud": 30}, "fraud": {"legit": 12, "fraud": 58}})
    data = chart.source.data
    cells = {
        (t, p): (c, colour, text)
        for t, p, c, colour, text in zip(
            data["true"], data["pred"], data["count"], data["color"], data["text"], strict=True
        )
    }
    assert {k: v[0] for k, v in cells.items()} == {
        ("legit", "legit"): 900,
        ("legit", "fraud"): 30,
        ("fraud", "legit"): 12,
        ("fraud", "fraud"): 58,
    }
    assert cells[("legit", "legit")][2] == "900"

    def rgb(colour: str) -> tuple[int, int, int]:
        return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)

    for (t, p), (_count, colour, _text) in cells.items():
        r, _g, b = rgb(colour)
        assert (b > r) if t == p else (r > b), (t, p, colour)  # blue on the diagonal, red off it
    assert rgb(cells[("legit", "legit")][1])[0] < rgb(cells[("fraud", "fraud")][1])[0]  # more = deeper colour
    chart.update({})
    assert set(chart.source.data["count"]) == {0.0}


def test_a_map_puts_points_and_route_at_their_coordinates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COELHO_TILE_URL", raising=False)
    plain = PointMap("trip", route=True)
    points = [("origin", -23.55, -46.63, "#000"), ("destination", -23.60, -46.70, "#fff"), ("gone", None, 1.0, "#f00")]
    plain.update(points)  # type: ignore[arg-type]
    assert plain.points.data["name"] == ["origin", "destination"]  # a point without coordinates is left out
    assert plain.points.data["x"] == [-46.63, -46.70] and plain.points.data["y"] == [-23.55, -23.60]
    assert plain.route.data == {"x": [-46.63, -46.70], "y": [-23.55, -23.60]}
    x_range, y_range = plain.figure.x_range, plain.figure.y_range
    assert x_range.start < -46.70 < -46.63 < x_range.end and y_range.start < -23.60 < -23.55 < y_range.end

    monkeypatch.setenv("COELHO_TILE_URL", "http://127.0.0.1:1/{Z}/{X}/{Y}.png")
    tiled = PointMap("customers")
    tiled.update([("c1", 40.0, -3.7, "#000")])
    x, y = tiled.points.data["x"][0], tiled.points.data["y"][0]
    assert (x, y) == pytest.approx(_mercator(40.0, -3.7))
    assert x == pytest.approx(math.radians(-3.7) * 6378137.0)
