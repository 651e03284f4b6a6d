"""The fraud map colours each transaction by the fraud probability the live champion gives it (what predict-one
answers the Predict button with), rings it by its label once that arrived, and says which model coloured it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from coelho.settings import Settings
from eventing.domains import TFD
from tests.ui.test_state_reader import redis_server  # noqa: F401  (the fixture)
from ui.charts import AMBER, GREEN, GREY, RED
from ui.live import LiveData
from ui.maps import RISK_PALETTE, TransactionMap, risk_color


def test_colours_follow_the_predicted_probability_and_rings_the_label(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COELHO_TILE_URL", raising=False)
    fraud_map = TransactionMap()
    fraud_map.update(
        [
            # a high probability labelled legit (a false alarm) and a low one labelled fraud (a miss): the fill
            # follows the model, never the label
            {"lat": 40.7, "lon": -74.0, "risk": 0.97, "is_fraud": False, "amount": 900.0},
            {"lat": 51.5, "lon": -0.1, "risk": 0.02, "is_fraud": True, "amount": 12.0},
            {"lat": 48.9, "lon": 2.35, "risk": 0.5, "is_fraud": None, "amount": 40.0},
            {"lat": 35.7, "lon": 139.7, "risk": None, "is_fraud": None, "amount": 5.0},
        ]
    )
    data = fraud_map.recent.data
    by_amount = {
        a: dict(zip(("color", "ring", "ring_width", "risk", "label"), row, strict=True))
        for a, *row in zip(
            data["amount"], data["color"], data["ring"], data["ring_width"], data["risk"], data["label"], strict=True
        )
    }
    false_alarm, miss, unsure, unscored = by_amount[900.0], by_amount[12.0], by_amount[40.0], by_amount[5.0]
    assert false_alarm["color"] == risk_color(0.97) and _near(false_alarm["color"], RED)
    assert miss["color"] == risk_color(0.02) and _near(miss["color"], GREEN)
    assert unsure["color"] == AMBER and unscored["color"] == GREY
    assert (false_alarm["ring"], miss["ring"]) == (TransactionMap.LEGIT_RING, TransactionMap.FRAUD_RING)
    assert unsure["ring_width"] == unscored["ring_width"] == 0.0  # no label yet: no ring
    assert [r["risk"] for r in (false_alarm, miss, unsure, unscored)] == ["97.0%", "2.0%", "50.0%", "not scored"]
    assert [r["label"] for r in (false_alarm, miss, unsure, unscored)] == ["legit", "fraud"] + ["not arrived yet"] * 2
    assert data["amount"] == [5.0, 12.0, 40.0, 900.0]  # by rising risk: where dots overlap the riskiest is on top
    bars = [r for r in fraud_map.figure.below if type(r).__name__ == "ColorBar"]
    assert len(bars) == 1 and list(bars[0].color_mapper.palette) == list(RISK_PALETTE)


def test_the_colour_scale_rises_with_the_probability() -> None:
    reds = [int(risk_color(p / 10)[1:3], 16) - int(risk_color(p / 10)[3:5], 16) for p in range(11)]
    assert reds == sorted(reds) and reds[0] < 0 < reds[-1]  # from green (more G than R) to red


def _near(a: str, b: str, tolerance: int = 12) -> bool:
    return all(abs(int(a[i : i + 2], 16) - int(b[i : i + 2], 16)) <= tolerance for i in (1, 3, 5))


def _log_transactions(client: redis.Redis, count: int, seed: int, delayed: bool = False) -> list[Any]:
    """Log `count` generated transactions; `delayed`: their labels come as label events, the last 20 not yet."""
    from functions.model_state.event_log import EventLog
    from producers.generators import make_generator

    log = EventLog(client, TFD)
    events = list(make_generator("tfd", seed=seed, delayed_labels=delayed).take(count))
    labels = [e for e in events if e.kind == "label"]
    for event in events:
        if delayed and event.kind == "label" and event in labels[-20:]:
            continue
        kind = "label" if event.kind == "label" else "unlabeled" if "is_fraud" not in event.data else "record"
        purpose = "record" if kind == "record" else kind
        clean = TFD.validate(event.data, purpose=purpose)  # type: ignore[arg-type]
        log.append(kind, clean, log.dedup_keys("/tests", event.id, clean, kind))
    return events


def test_the_map_shows_the_probability_predict_one_answers(
    redis_server: tuple[redis.Redis, Settings],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from functions.model_state.replica import ModelReplica
    from functions.predict import Predictor

    monkeypatch.setenv("COELHO_DATA_DIR", str(Path(redis_server[1].data_dir)))
    client, settings = redis_server
    learner = ModelReplica(client, TFD, role="learner")
    _log_transactions(client, 600, seed=3)
    learner.catch_up()
    learner.write_snapshot(learner.state)  # the map's copy starts from it and replays what follows
    _log_transactions(client, 150, seed=4, delayed=True)  # some labels come later, some not yet
    learner.catch_up()

    live = LiveData(settings)
    reading = live.read_map("tfd")
    assert reading.problem is None and reading.model == TFD.default_model
    assert reading.events_learned == learner.state.events_learned
    shown = reading.transactions
    assert len(shown) == 300 and _labels_in(client, 300)  # 300 transactions, though labels take log entries too
    assert any(t["is_fraud"] is None for t in shown) and any(t["is_fraud"] is not None for t in shown)

    predictor = Predictor(client)
    try:
        for t in shown[-40:]:
            answer = predictor.predict(TFD, {k: v for k, v in t["event"].items() if k != "is_fraud"})
            assert t["risk"] == pytest.approx(answer["fraud_probability"], abs=1e-9)
    finally:
        predictor.stop()
    riskiest = max(shown, key=lambda t: t["risk"])
    fraud_map = TransactionMap()
    fraud_map.update(shown)
    assert fraud_map.recent.data["color"][-1] == risk_color(riskiest["risk"])  # drawn last: on top


def _labels_in(client: redis.Redis, count: int) -> list[Any]:
    """The label entries among the last `count` of the log."""
    from functions.model_state.keys import key

    entries: Any = client.xrevrange(key("tfd", "log"), count=count)
    return [f for _, f in entries if f[b"k"] == b"label"]


def test_when_the_model_cannot_be_read_every_transaction_is_unscored_and_the_reason_kept() -> None:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from ui.risk import ChampionRisk

    unreachable = redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))  # nothing on port 1
    scorer = ChampionRisk(unreachable, "tfd")
    assert scorer.score([{"amount": 1.0}, {"amount": 2.0}]) == [None, None]
    assert scorer.problem and "Connection" in scorer.problem


def test_the_page_asks_for_the_map_and_draws_the_map_threads_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    from ui.live import DomainLive
    from ui.pages.tfd import FraudPage

    monkeypatch.delenv("COELHO_TILE_URL", raising=False)
    live = LiveData(Settings())  # not started: the test hands over the snapshot
    previous, LiveData._instance = LiveData._instance, live
    try:
        page = FraudPage(live.settings)
        assert "tfd" not in live._map_wanted  # nobody looks at the map: it is neither read nor scored
        page._build_map_tab()
        assert "tfd" in live._map_wanted
        shown: list[dict[str, Any]] = [
            {"lat": 40.7, "lon": -74.0, "is_fraud": True, "risk": 0.93, "amount": 900.0, "event": {}},
            {"lat": 51.5, "lon": -0.1, "is_fraud": None, "risk": 0.04, "amount": 12.0, "event": {}},
        ]
        snapshot = DomainLive("tfd", transactions=shown, risk_model="logreg_rus", risk_events_learned=4321)
        page.refresh_extra(snapshot)
        assert page.map is not None and page.map.recent.data["color"] == [risk_color(0.04), risk_color(0.93)]
        assert "logreg_rus" in page.map_source.object and "4,321" in page.map_source.object
    finally:
        LiveData._instance = previous
