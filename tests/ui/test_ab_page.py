"""The use-case pages' Compare tab without a browser: the verdict, Promote and Roll back, preferences."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from coelho.settings import Settings
from eventing.domains import TFD
from functions.model_state import ab, ab_preferences
from functions.model_state.event_log import LogEntry
from functions.model_state.replica import sync_replicas
from tests.functions.streams import events
from tests.ui.test_state_reader import redis_server  # noqa: F401  (the fixture)


def test_compare_tab_shows_the_verdict_and_promotes(
    redis_server: tuple[redis.Redis, Settings],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ui.pages.tfd import FraudPage

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # no MLflow here: the aliases move in Redis only
    client, settings = redis_server
    ab.live_models(client, TFD, ("logreg_rus", "logreg"))
    learners = sync_replicas(client, TFD, "learner", [])
    log = learners[0].log
    for i, event in enumerate(events("tfd", 150, seed=4)):
        appended = log.append("record", event, log.dedup_keys("/t", f"u-{i}", event, "record"))
        for replica in learners:
            replica.learn_committed(LogEntry(appended.seq, "record", event, appended.t_ms), appended.paused_at)
    for replica in learners:
        replica.write_summary()
    page: Any = FraudPage(settings)
    page._build_compare_tab()
    shown = page.compare_html.object
    assert "Champion" in shown and "logreg_rus" in shown and "n=150 paired events" in shown
    assert page.promote_select.options == ["logreg_rus", "logreg"] and page._pair == ("logreg_rus", "logreg")
    page.promote_select.value = "logreg"
    page._promote()
    assert "Champion is now logreg" in page.ab_message.object
    assert ab.champion(client, TFD)["model"] == "logreg"
    page._rollback()
    assert ab.champion(client, TFD)["model"] == "logreg_rus"
    page._rollback()  # nothing left to roll back to: said, not raised
    assert "no earlier champion" in page.ab_message.object
    page._prefer("b")
    assert ab_preferences.preferences(client, TFD) == {"logreg_rus|logreg": {"a": 0, "b": 1, "tie": 0}}
    assert "People's preferences" in page.compare_html.object
