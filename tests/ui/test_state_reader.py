"""ui.state_reader reads what learn-one publishes: written here by the functions' own ModelReplica into a real
(throwaway) Redis, read back as the dashboard shows it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from coelho.settings import Settings
from eventing.domains import ETA
from tests.functions.function_testkit import throwaway_redis
from ui import state_reader


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[tuple[redis.Redis, Settings]]:
    with throwaway_redis(tmp_path) as url:
        client = redis.Redis.from_url(url)
        settings = Settings.load().with_free_ports(tmp_path)
        settings.ports["redis"] = client.connection_pool.connection_kwargs["port"]
        try:
            yield client, settings
        finally:
            client.close()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_reads_the_model_learn_one_publishes(redis_server: tuple[redis.Redis, Settings]) -> None:
    from functions.model_state.event_log import EventLog
    from functions.model_state.replica import ModelReplica
    from producers.generators import make_generator

    client, settings = redis_server
    log = EventLog(client, ETA)
    learner = ModelReplica(client, ETA, role="learner")
    for event in make_generator("eta", seed=9).take(250):
        clean = ETA.validate(event.data)
        log.append("record", clean, log.dedup_keys("/tests", event.id, clean, "record"))
    learner.catch_up()
    learner.write_summary()

    live = state_reader.read_domain(state_reader.redis_client(settings), "eta")
    assert live.available and live.model == ETA.default_model
    assert live.events_learned == learner.state.events_learned == 250
    assert live.metrics["MAE"] == pytest.approx(learner.state.metric_values()["MAE"])
    assert live.history["MAE"], "metric history points for the charts"
    assert all(x > 0 for x, _ in live.history["MAE"])
    assert live.paused is False

    assert live.behind == 0

    paused = state_reader.set_training(settings, "eta", paused=True)
    assert paused["training"] == "paused"
    assert state_reader.read_domain(client, "eta").paused is True
    for event in make_generator("eta", seed=10).take(7):  # logged while paused: waiting to be learned
        clean = ETA.validate(event.data)
        log.append("record", clean, log.dedup_keys("/tests", event.id, clean, "record"))
    waiting = state_reader.read_domain(client, "eta")
    assert waiting.behind == 7 and waiting.events_learned == 250
    from ui.pages.eta import EtaPage

    shown = EtaPage(settings).model_html(waiting)
    assert "<b class='events-behind'>7</b> waiting to be learned" in shown, shown
    state_reader.set_training(settings, "eta", paused=False)
    learner.catch_up()
    learner.write_summary()
    resumed = state_reader.read_domain(client, "eta")
    assert resumed.paused is False and resumed.behind == 0 and resumed.events_learned == 257
    assert "waiting to be learned" not in EtaPage(settings).model_html(resumed)


def test_producer_controls_round_trip(redis_server: tuple[redis.Redis, Settings]) -> None:
    client, settings = redis_server
    assert state_reader.read_producer(client, "tfd") == (None, None)
    state_reader.set_producer(settings, "tfd", enabled=False, rate=12.5)
    assert client.get("coelho:producer:tfd:enabled") == b"0"
    assert state_reader.read_producer(client, "tfd") == (False, 12.5)


def test_redis_down_is_reported_not_raised_as_a_traceback(tmp_path: Path) -> None:
    settings = Settings.load().with_free_ports(tmp_path)  # nothing listens on its redis port
    with pytest.raises(state_reader.StateUnavailable):
        state_reader.read_domain(state_reader.redis_client(settings), "tfd")
    with pytest.raises(state_reader.StateUnavailable):
        state_reader.set_producer(settings, "tfd", enabled=True)


def test_lists_every_model_of_a_domain_learning_side_by_side(redis_server: tuple[redis.Redis, Settings]) -> None:
    """Two models learn the same ETA log (champion and challenger): the page lists both, with their own state."""
    from functions.model_state.event_log import EventLog
    from functions.model_state.replica import ModelReplica
    from producers.generators import make_generator

    client, settings = redis_server
    log = EventLog(client, ETA)
    champion = ModelReplica(client, ETA, role="learner")
    challenger = ModelReplica(client, ETA, "linear_regression", role="learner")
    for event in make_generator("eta", seed=11).take(120):
        clean = ETA.validate(event.data)
        log.append("record", clean, log.dedup_keys("/tests", event.id, clean, "record"))
    champion.catch_up()
    champion.write_summary()
    challenger.catch_up()
    challenger.write_summary()

    reader = state_reader.redis_client(settings)
    rows = state_reader.read_models(reader, "eta")
    assert sorted(r["name"] for r in rows) == sorted([ETA.default_model, "linear_regression"])
    by_name = {r["name"]: r for r in rows}
    for replica in (champion, challenger):
        row = by_name[replica.model_name]
        assert row["available"] and row["events_learned"] == 120
        assert row["metric"] == ETA.main_metrics[0]
        assert row["value"] == pytest.approx(replica.state.metric_values()[ETA.main_metrics[0]])
    assert by_name["linear_regression"]["value"] != by_name[ETA.default_model]["value"], "each model's own metric"

    live = state_reader.read_domain(reader, "eta")
    assert [r["name"] for r in live.models] == [r["name"] for r in rows]
    assert live.model == rows[0]["name"], "the header shows the first model; the table shows them all"


def test_a_prediction_request_names_the_chosen_model() -> None:
    from ui.predict_client import prediction_event

    chosen = prediction_event(ETA, {"trip_id": "t-1", "driver_id": "d-1"}, model="linear_regression")
    assert chosen.get_extension("model") == "linear_regression"
    default = prediction_event(ETA, {"trip_id": "t-1", "driver_id": "d-1"})
    assert default.get_extension("model") is None
