"""The parts of the dashboard that need no browser: forms from the declarations, samples, report, formatting."""

from __future__ import annotations

import random

import pytest

from eventing.domains import DOMAINS, ECCI, ETA, TFD
from eventing.domains.tfd import RISK_LEVELS, risk_level
from ui.charts import RISK_ZONES
from ui.forms import PredictionForm, field_label
from ui.pages.metric_cards import format_metric
from ui.pages.tfd import classification_report
from ui.sample import declared_sample, haversine_km, sample_payload


@pytest.mark.parametrize("name", list(DOMAINS))
def test_samples_are_valid_prediction_requests(name: str) -> None:
    domain = DOMAINS[name]
    rng = random.Random(3)
    for _ in range(20):
        domain.validate(sample_payload(domain, rng), purpose="prediction")
        domain.validate(declared_sample(domain, rng), purpose="prediction")


@pytest.mark.parametrize("name", list(DOMAINS))
def test_form_has_an_input_per_feature_and_sends_a_valid_request(name: str) -> None:
    domain = DOMAINS[name]
    form = PredictionForm(domain, rng=random.Random(5))
    features = [path for path, f in domain.leaf_fields() if f.role == "feature"]
    assert set(features) <= set(form.widgets)
    assert form.validate() is not None and form.errors == {}
    assert domain.target not in form.payload()


def test_inputs_follow_the_declared_types() -> None:
    import panel as pn

    form = PredictionForm(TFD, rng=random.Random(1))
    assert isinstance(form.widgets["currency"], pn.widgets.Select)
    assert form.widgets["currency"].options == list(TFD_choices("currency"))
    assert isinstance(form.widgets["cvv_provided"], pn.widgets.Checkbox)
    assert isinstance(form.widgets["account_age_days"], pn.widgets.IntInput)
    assert isinstance(form.widgets["amount"], pn.widgets.FloatInput)
    assert isinstance(form.widgets["timestamp"], pn.widgets.DatetimePicker)
    assert "[0.01–100,000]" in form.widgets["amount"].name


def TFD_choices(path: str) -> tuple[str, ...]:
    return dict(TFD.leaf_fields())[path].choices or ()


def test_an_out_of_range_value_shows_its_message_beside_the_field() -> None:
    form = PredictionForm(ETA, rng=random.Random(2))
    form.widgets["hour_of_day"].value = 30
    assert form.validate() is None
    assert "above the maximum 23" in form.messages["hour_of_day"].object
    assert form.messages["hour_of_day"].visible
    assert not form.messages["weather"].visible
    form.widgets["hour_of_day"].value = 8
    assert form.validate() is not None and not form.messages["hour_of_day"].visible


def test_editing_a_field_notifies_listeners_but_randomize_sets_all() -> None:
    form = PredictionForm(ECCI, rng=random.Random(4))
    seen: list[str] = []
    form.on_change(seen.append)
    form.widgets["location.lat"].value = 10.0
    assert seen == ["location.lat"]
    before = form.payload()
    form.randomize()
    assert seen[-1] == "*" and form.payload() != before


def test_labels_carry_unit_and_range() -> None:
    path, field = next((p, f) for p, f in ETA.leaf_fields() if p == "origin.lat")
    assert field_label(path, field) == "Origin · Latitude (°) [-90–90]"


def test_classification_report_from_a_confusion_matrix() -> None:
    rows = {
        r["class"]: r
        for r in classification_report({"False": {"False": 90, "True": 10}, "True": {"False": 2, "True": 8}})
    }
    assert rows["fraud"]["precision"] == pytest.approx(8 / 18)
    assert rows["fraud"]["recall"] == pytest.approx(0.8)
    assert rows["macro avg"]["recall"] == pytest.approx((0.9 + 0.8) / 2)
    assert rows["weighted avg"]["recall"] == pytest.approx((90 + 8) / 110)
    assert rows["accuracy"]["f1"] == pytest.approx(98 / 110)
    assert classification_report({}) == [
        {"class": "legit", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
        {"class": "fraud", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
    ]


def test_the_gauge_zones_are_the_declared_risk_levels() -> None:
    assert [(name.lower(), low, high) for name, low, high, _ in RISK_ZONES] == list(RISK_LEVELS)
    for p in (0.0, 0.29, 0.3, 0.69, 0.7, 1.0):
        zone = next((name for name, low, high, _ in RISK_ZONES if low <= p < high), RISK_ZONES[-1][0])
        assert zone == risk_level(p).upper(), p


def test_formatting() -> None:
    assert format_metric(None) == "—"
    assert format_metric(7.0) == "7"
    assert format_metric(0.123456) == "0.1235"
    assert format_metric(1234.5) == "1,234"
    assert round(haversine_km(29.76, -95.37, 29.76, -95.37), 6) == 0


def test_maps_need_no_tiles_unless_a_tile_server_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from bokeh.models import TileRenderer

    from ui.maps import PointMap

    monkeypatch.delenv("COELHO_TILE_URL", raising=False)
    plain = PointMap("route", route=True)
    plain.update([("Origin", 29.76, -95.37, "green"), ("Destination", 29.70, -95.40, "red")])
    assert not any(isinstance(r, TileRenderer) for r in plain.figure.renderers)
    assert plain.points.data["x"] == [-95.37, -95.40]  # longitude on x, latitude on y
    assert plain.route.data["y"] == [29.76, 29.70]
    assert plain.figure.x_range.start < -95.40 and plain.figure.x_range.end > -95.37

    monkeypatch.setenv("COELHO_TILE_URL", "http://tiles.example/{Z}/{X}/{Y}.png")
    tiled = PointMap("route", route=True)
    tiled.update([("Origin", 29.76, -95.37, "green")])
    assert any(isinstance(r, TileRenderer) for r in tiled.figure.renderers)
    assert abs(tiled.points.data["x"][0]) > 1e6  # Web Mercator metres
