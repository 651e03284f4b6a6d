"""Each domain declares predict-one's reply as it declares its events: the fields every reply has, the event id
echoed, then the model's answer, and the function that turns the task's answer into those fields."""

from __future__ import annotations

import pytest

from eventing.domain import DECISION_THRESHOLD, REPLY_FIELDS
from eventing.domains import DOMAINS, ECCI, ETA, TFD
from eventing.domains.tfd import RISK_LEVELS, risk_level
from eventing.schema import Field, check_values

# What each task's answer looks like, as the model state hands it to `Domain.prediction_values`.
ANSWERS = {
    "classification": [(0.0,), (0.1,), (0.5,), (0.97,), (1.0,)],
    "regression": [(0.0,), (61.5,), (2400.0,)],
    "clustering": [(None, "no clusters yet"), (3, "cluster 3: 12 interactions")],
}


@pytest.mark.parametrize("name", list(DOMAINS))
def test_the_reply_is_the_common_fields_the_echoed_id_and_the_prediction(name: str) -> None:
    d = DOMAINS[name]
    fields = d.reply_fields()
    names = [f.name for f in fields]
    assert len(names) == len(set(names)), names
    assert names == [*(f.name for f in REPLY_FIELDS), d.id_field, *(f.name for f in d.prediction_fields)]
    echoed = fields[len(REPLY_FIELDS)]
    assert echoed.role == "identifier" and not echoed.required and echoed.type == "string"
    assert all(f.role == "prediction" for f in d.prediction_fields) and d.prediction_fields
    by_name = {f.name: f for f in fields}
    assert by_name["domain"].choices == (d.name,)
    assert by_name["model"].choices == tuple(d.model_factories)
    assert all(f.type != "object" for f in fields)  # flat: one table in docs/events.md, one check of the reply
    assert [f["name"] for f in d.describe()["reply_fields"]] == names


@pytest.mark.parametrize("name", list(DOMAINS))
def test_prediction_values_give_exactly_the_declared_prediction_fields(name: str) -> None:
    d = DOMAINS[name]
    for answer in ANSWERS[d.task]:
        values = d.prediction_values(*answer)
        assert check_values(d.prediction_fields, values) == {}, (answer, values)
        assert list(values) == [f.name for f in d.prediction_fields]


def test_the_fraud_reply_follows_the_probability() -> None:
    assert TFD.prediction_values(0.42) == {"fraud_probability": 0.42, "is_fraud": False, "risk_level": "medium"}
    assert TFD.prediction_values(DECISION_THRESHOLD)["is_fraud"] is True
    assert ETA.prediction_values(90.0) == {"eta_seconds": 90.0, "eta_minutes": 1.5}
    assert ECCI.prediction_values(None, "none") == {"cluster": None, "cluster_description": "none"}


def test_risk_levels_cover_the_probabilities_once() -> None:
    assert RISK_LEVELS[0][1] == 0.0 and RISK_LEVELS[-1][2] == 1.0
    assert all(a[2] == b[1] for a, b in zip(RISK_LEVELS, RISK_LEVELS[1:], strict=False))
    for level, low, high in RISK_LEVELS:
        assert risk_level(low) == level
        assert risk_level((low + high) / 2) == level
    assert risk_level(1.0) == RISK_LEVELS[-1][0]
    choices = next(f.choices for f in TFD.prediction_fields if f.name == "risk_level")
    assert choices == tuple(level for level, _, _ in RISK_LEVELS)


def test_check_values_names_every_departure_from_the_declaration() -> None:
    fields = (
        Field("p", "number", "prediction", "", minimum=0, maximum=1),
        Field("n", "integer", "context", "", nullable=True),
        Field("flag", "boolean", "prediction", ""),
        Field("level", "string", "prediction", "", choices=("low", "high")),
        Field("id", "string", "identifier", "", required=False),
    )
    good = {"p": 0.5, "n": None, "flag": False, "level": "low"}
    assert check_values(fields, good) == {}
    assert check_values(fields, {**good, "id": "e-1", "n": 3}) == {}
    assert check_values(fields, {"p": 1.5, "n": 2.0, "flag": 1, "level": "LOW", "id": None, "x": 0}) == {
        "p": "1.5 is above the maximum 1",
        "n": "expected an integer, got 2.0",
        "flag": "expected a boolean, got 1",
        "level": "unknown value 'LOW': allowed are low, high",
        "id": "null, but the field is not nullable",
        "x": "not declared",
    }
    assert check_values(fields, {"p": True, "flag": True, "level": "high"}) == {
        "p": "expected a number, got True",
        "n": "missing",
    }
    assert check_values(fields, {**good, "extra": 1}, extra_allowed=True) == {}
    assert check_values(fields, {**good, "p": float("nan")}) == {"p": "expected a finite number, got nan"}
