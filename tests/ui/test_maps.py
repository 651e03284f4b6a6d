"""The maps without a tile server: Natural Earth's countries and cities under the data; with COELHO_TILE_URL set,
tiles instead. The fraud map colours transactions by their predicted risk and the form's transaction by its risk zone."""

from __future__ import annotations

import pytest

from ui.charts import GREEN, RED, RISK_ZONES
from ui.maps import PointMap, TransactionMap, basemap


def names(fig: object) -> set[str]:
    return {r.name for r in fig.renderers if r.name}  # type: ignore[attr-defined]


def test_without_tiles_the_basemap_is_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COELHO_TILE_URL", raising=False)
    route = PointMap("route", route=True)
    assert {"basemap-countries", "basemap-cities"} <= names(route.figure)
    route.update([("Origin", 29.76, -95.37, GREEN), ("Destination", 29.70, -95.40, RED)])
    assert route.figure.x_range.end - route.figure.x_range.start >= 0.5  # wide enough to see a coast or a city
    assert len(basemap()["countries"]["xs"]) > 200


def test_with_a_tile_url_tiles_replace_the_basemap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COELHO_TILE_URL", "https://tiles.example/{Z}/{X}/{Y}.png")
    route = PointMap("route")
    assert not {"basemap-countries", "basemap-cities"} & names(route.figure)
    assert any(type(r).__name__ == "TileRenderer" for r in route.figure.renderers)


def test_transactions_are_coloured_by_risk_and_the_form_by_its_risk_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COELHO_TILE_URL", raising=False)
    fraud_map = TransactionMap()
    fraud_map.update(
        [
            {"lat": 40.7, "lon": -74.0, "is_fraud": True, "risk": 1.0, "amount": 900.0},
            {"lat": 51.5, "lon": -0.1, "is_fraud": False, "risk": 0.0, "amount": 12.0},
        ]
    )
    # the predicted probability (tests/ui/test_fraud_map_risk.py), the riskiest drawn last (on top)
    assert fraud_map.recent.data["color"] == [GREEN, RED]
    assert fraud_map.recent.data["x"] == [-0.1, -74.0]  # degrees: longitude across
    fraud_map.show_transaction(48.85, 2.35, 0.91)
    high = next(c for n, _, _, c in RISK_ZONES if n == "HIGH")
    assert fraud_map.current.data["color"] == [high] and "HIGH" in fraud_map.current.data["label"][0]
    fraud_map.show_transaction(None, None, None)
    assert fraud_map.current.data["x"] == []
