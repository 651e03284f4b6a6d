"""The model/version choices of the use-case pages (ui/ab_catalog.py) and the preference counts per page and version
(functions/model_state/ab_preferences.py), without a process."""

from __future__ import annotations

from typing import Any

import pytest

from eventing.domains import TFD
from eventing.schema import ValidationError
from functions.model_state import ab_preferences
from ui import ab_catalog
from ui.ab_catalog import Catalog, choices, parse_versions, promotion_choices, resolve, target

# What MLflow's REST API answers to model-versions/search (trimmed to the fields read).
SEARCH = {
    "model_versions": [
        {
            "name": "coelho-tfd",
            "version": "1",
            "creation_timestamp": 1000,
            "tags": [{"key": "model", "value": "logreg_rus"}, {"key": "seq", "value": "400"}],
            "aliases": [],
        },
        {
            "name": "coelho-tfd",
            "version": "3",
            "creation_timestamp": 3000,
            "tags": [
                {"key": "model", "value": "logreg"},
                {"key": "seq", "value": "800"},
                {"key": "events_learned", "value": "790"},
            ],
            "aliases": ["challenger"],
        },
        {"name": "coelho-tfd", "version": "2", "tags": [{"key": "model", "value": "logreg_rus"}]},
        {"name": "coelho-tfd", "version": "4", "tags": []},  # not a checkpoint of this platform: skipped
    ]
}


def test_registered_versions_are_read_newest_first_with_their_model_and_position() -> None:
    rows = parse_versions(SEARCH)
    assert [(r["version"], r["model"], r["seq"]) for r in rows] == [
        (3, "logreg", 800),
        (2, "logreg_rus", 0),
        (1, "logreg_rus", 400),
    ]
    assert rows[0]["events_learned"] == 790 and rows[0]["aliases"] == ["challenger"]
    assert parse_versions({}) == []


def catalog() -> Catalog:
    return Catalog(
        "tfd",
        live=["logreg_rus", "logreg"],
        aliases={
            "champion": {"model": "logreg_rus", "version": 2, "seq": 600},
            "challenger": {"model": "logreg", "version": None},  # no checkpoint yet: no frozen choice
        },
        versions=parse_versions(SEARCH),
        updated=1.0,
    )


def test_choices_list_live_models_aliases_and_versions() -> None:
    options = choices(catalog(), default=True)
    assert list(options.values()) == [
        "",
        "model:logreg_rus",
        "model:logreg",
        "alias:champion",
        "version:3",
        "version:2",
        "version:1",
    ]
    assert "champion → logreg_rus v2 · frozen" in options and "v3 · logreg · frozen" in options
    assert "" not in choices(catalog()).values()


def test_each_model_lists_only_its_newest_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ab_catalog, "VERSIONS_SHOWN", 1)
    tokens = list(choices(catalog()).values())
    assert "version:3" in tokens and "version:2" in tokens and "version:1" not in tokens


def test_a_choice_is_what_predict_one_is_asked_and_what_it_stands_for() -> None:
    cat = catalog()
    assert target("model:logreg") == ("logreg", None)
    assert target("version:3") == (None, "3") and target("alias:champion") == (None, "champion")
    assert target("") == (None, None) and target("nonsense") == (None, None)
    assert resolve(cat, "alias:champion") == ("logreg_rus", 2)
    assert resolve(cat, "version:3") == ("logreg", 3)
    assert resolve(cat, "model:logreg") == ("logreg", None)
    assert resolve(cat, "") == (None, None)


def test_promotion_offers_live_models_and_their_versions_only() -> None:
    cat = catalog()
    cat.live = ["logreg"]
    assert promotion_choices(cat) == {"logreg (newest version)": "logreg", "v3 · logreg": "3"}


class Hash:
    """The two Redis hash commands preferences use."""

    def __init__(self) -> None:
        self.data: dict[str, int] = {}

    def hincrby(self, name: str, field: str, amount: int) -> int:
        self.data[field] = self.data.get(field, 0) + amount
        return self.data[field]

    def hgetall(self, name: str) -> dict[Any, Any]:
        return {k.encode(): str(v).encode() for k, v in self.data.items()}


def test_preferences_name_the_page_and_the_versions_compared() -> None:
    client = Hash()
    a, b = ab_preferences.arm_label("logreg_rus", None), ab_preferences.arm_label("logreg", 3)
    assert ab_preferences.record_preference(client, TFD, a, b, "b", page="tfd")["count"] == 1
    ab_preferences.record_preference(client, TFD, a, b, "b", page="tfd")
    ab_preferences.record_preference(client, TFD, a, b, "tie")  # the domain's page by default
    client.data["logreg_rus|logreg|a"] = 4  # counted before pages and versions were recorded
    counts = ab_preferences.preferences(client, TFD)
    assert counts == {
        "tfd|logreg_rus@live|logreg@v3": {"a": 0, "b": 2, "tie": 1},
        "|logreg_rus|logreg": {"a": 4, "b": 0, "tie": 0},
    }
    per_version = ab_preferences.totals(counts)
    assert per_version["logreg@v3"] == {"shown": 3, "preferred": 2, "tie": 1, "other": 0}
    assert per_version["logreg_rus@live"] == {"shown": 3, "preferred": 0, "tie": 1, "other": 2}
    assert per_version["logreg_rus"]["preferred"] == 4
    with pytest.raises(ValidationError):
        ab_preferences.record_preference(client, TFD, a, b, "maybe")
    with pytest.raises(ValidationError):
        ab_preferences.record_preference(client, TFD, "x|y", b, "a")
