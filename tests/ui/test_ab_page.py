"""The use-case pages' A/B parts without a browser, on a private Redis: the model/version selector, A and B side by
side with preferences per page and version, both metric curves on the same event axis, the verdict, the split set
from the page, and Promote and Roll back, each acting only once confirmed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from coelho.settings import Settings
from eventing.domains import TFD
from functions.model_state import ab, ab_preferences
from functions.model_state.event_log import LogEntry
from functions.model_state.keys import key
from functions.model_state.replica import sync_replicas
from tests.functions.streams import events
from tests.ui.test_state_reader import redis_server  # noqa: F401  (the fixture)
from ui import ab_catalog
from ui.ab_catalog import VersionCatalog
from ui.predict_client import PredictionReply


@pytest.fixture
def page(
    redis_server: tuple[redis.Redis, Settings],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Any, redis.Redis]]:
    """The fraud page over two live models that learned the same 300 events, a version of each registered (the
    catalogue's MLflow answer stands in), the champion alias on logreg_rus v1."""
    from ui.pages.tfd import FraudPage

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # no MLflow: the aliases move in Redis only
    client, settings = redis_server
    ab.live_models(client, TFD, ("logreg_rus", "logreg"))
    learners = sync_replicas(client, TFD, "learner", [])
    log = learners[0].log
    for i, event in enumerate(events("tfd", 300, seed=4)):
        appended = log.append("record", event, log.dedup_keys("/t", f"u-{i}", event, "record"))
        for replica in learners:
            replica.learn_committed(LogEntry(appended.seq, "record", event, appended.t_ms), appended.paused_at)
    for replica in learners:
        replica.write_summary()
    ab.after_checkpoint(client, TFD, "logreg_rus", 1, 300)
    versions = [
        {"version": 2, "model": "logreg", "seq": 300, "events_learned": 300, "created_ms": 2, "aliases": []},
        {"version": 1, "model": "logreg_rus", "seq": 300, "events_learned": 300, "created_ms": 1, "aliases": []},
    ]
    monkeypatch.setattr(ab_catalog, "registered_versions", lambda settings, domain, timeout=5.0: versions)
    catalog = VersionCatalog(settings)  # not started: read here, once
    catalog.refresh()
    monkeypatch.setattr(VersionCatalog, "_instance", catalog)
    yield FraudPage(settings), client


def test_the_selector_lists_live_models_aliases_and_registered_versions(page: tuple[Any, redis.Redis]) -> None:
    fraud, _ = page
    fraud._sync_choices()
    assert list(fraud.model_select.options.values()) == [
        "",
        "model:logreg_rus",
        "model:logreg",
        "alias:champion",
        "version:2",
        "version:1",
    ]
    assert fraud.arm_a_select.value == "model:logreg_rus" and fraud.arm_b_select.value == "model:logreg"
    assert fraud.promote_select.options == {
        "logreg_rus (newest version)": "logreg_rus",
        "logreg (newest version)": "logreg",
        "v2 · logreg": "2",
        "v1 · logreg_rus": "1",
    }
    fraud.model_select.value = "version:2"
    assert fraud._chosen_model() == "logreg"


def test_a_and_b_answer_side_by_side_and_preferences_name_page_and_versions(
    page: tuple[Any, redis.Redis], monkeypatch: pytest.MonkeyPatch
) -> None:
    fraud, client = page
    asked: list[tuple[str | None, str | None]] = []

    def answer(settings: Settings, domain: Any, payload: dict[str, Any], **kw: Any) -> PredictionReply:
        asked.append((kw.get("model"), kw.get("version")))
        model, version = (kw["model"], 1) if kw.get("model") else ("logreg", int(kw["version"]))
        data = {"model": model, "version": version, "frozen": kw.get("version") is not None}
        data.update({"fraud_probability": 0.25 if kw.get("model") else 0.75, "is_fraud": False})
        return PredictionReply(ok=True, data=data, latency_ms=3.0)

    monkeypatch.setattr("ui.pages.ab_comparison.request_prediction", answer)
    fraud._build_compare_tab()
    fraud.arm_b_select.value = "version:2"
    assert all(b.disabled for b in fraud.prefer_buttons)
    fraud._ask_both()
    assert asked == [("logreg_rus", None), (None, "2")]  # the same form event, to the two chosen versions
    assert "logreg_rus@live" in fraud.answer_a.object and "0.25" in fraud.answer_a.object
    assert "logreg@v2" in fraud.answer_b.object and "0.75" in fraud.answer_b.object
    assert not any(b.disabled for b in fraud.prefer_buttons)
    fraud._prefer("b")
    assert ab_preferences.preferences(client, TFD) == {"tfd|logreg_rus@live|logreg@v2": {"a": 0, "b": 1, "tie": 0}}
    assert all(b.disabled for b in fraud.prefer_buttons)  # one preference per answer shown
    shown = fraud.compare_html.object
    assert "People's preferences" in shown and "ab-preference-counts" in shown
    assert "<td style='padding:2px 8px'>logreg@v2</td><td style='padding:2px 8px;text-align:right'>1</td>" in shown
    fraud.arm_a_select.value = "alias:champion"  # a new choice: the answers on screen are no longer A and B
    assert all(b.disabled for b in fraud.prefer_buttons)


def test_the_compare_tab_draws_both_curves_on_the_same_axis_with_the_verdict(page: tuple[Any, redis.Redis]) -> None:
    fraud, _ = page
    fraud._build_compare_tab()
    a, b = (source.data for source in fraud.curves.sources)
    assert a["x"] and a["x"] == b["x"], "both models' points at the same log positions"
    assert a["y"] != b["y"]
    assert all(not span.visible for span in fraud.curves.markers)
    fraud.arm_b_select.value = "version:2"  # a frozen version: its model's curve, marked where it was registered
    assert fraud.curves.markers[1].visible and fraud.curves.markers[1].location == 300
    shown = fraud.compare_html.object
    assert "Champion</b> logreg_rus v1" in shown and "n=300 paired events" in shown
    assert "class='ab-selected'" in shown


def test_promote_and_roll_back_act_only_when_confirmed(page: tuple[Any, redis.Redis]) -> None:
    fraud, client = page
    fraud._build_compare_tab()
    fraud.promote_select.value = "logreg"
    fraud._promote()
    assert fraud.confirm_row.visible and "Promote logreg (newest version) to champion?" in fraud.confirm_text.object
    assert ab.champion(client, TFD)["model"] == "logreg_rus", "nothing happens before the confirmation"
    fraud._cancel()
    assert not fraud.confirm_row.visible and ab.champion(client, TFD)["model"] == "logreg_rus"
    fraud._confirm()  # nothing pending any more
    assert ab.champion(client, TFD)["model"] == "logreg_rus"
    fraud._promote()
    fraud._confirm()
    assert ab.champion(client, TFD)["model"] == "logreg"
    assert "Champion is now logreg" in fraud.ab_message.object and not fraud.confirm_row.visible
    fraud._rollback()
    assert "from logreg to logreg_rus v1?" in fraud.confirm_text.object
    assert ab.champion(client, TFD)["model"] == "logreg"
    fraud._confirm()
    back = ab.champion(client, TFD)
    assert (back["model"], back["version"]) == ("logreg_rus", 1)
    fraud._rollback()  # nothing left to roll back to: said, not asked
    assert "no earlier champion" in fraud.ab_message.object and not fraud.confirm_row.visible


def test_the_split_is_set_and_ended_from_the_page(page: tuple[Any, redis.Redis]) -> None:
    fraud, client = page
    fraud._build_compare_tab()
    fraud.split_a_select.value, fraud.split_b_select.value, fraud.split_share.value = "champion", "logreg", 20
    fraud._set_split()
    assert json.loads(client.get(key("tfd", "split")) or "{}")["arms"] == [["champion", 80], ["logreg", 20]]
    assert "champion 80%" in fraud.ab_message.object and "logreg 20%" in fraud.compare_html.object
    fraud.split_b_select.value = "champion"
    fraud._set_split()
    assert "two different arms" in fraud.ab_message.object
    fraud._end_split()
    assert client.get(key("tfd", "split")) is None
    assert "none (the champion answers)" in fraud.compare_html.object


def test_curves_are_drawn_over_log_positions_not_events_learned(
    redis_server: tuple[redis.Redis, Settings],  # noqa: F811
) -> None:
    from ui import state_reader

    client, settings = redis_server
    late = {"seq": 900, "t_ms": 1, "events_learned": 100, "Accuracy": 0.9}  # a model added at position 800
    client.zadd(key("tfd", "model", "logreg", "history"), {json.dumps(late): 900})
    assert state_reader.ab_curves(settings, "tfd", ["logreg", "gone"], "Accuracy") == {
        "logreg": [(900.0, 0.9)],
        "gone": [],
    }
