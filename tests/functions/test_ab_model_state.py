"""A/B testing on the event-log model state, against a real (throwaway) Redis: several live models learn the same
events exactly once, a challenger starts from the start of the log or from now, predict-one routes by alias and
split (sticky), promotion swaps atomically, served answers are scored when their label is learned, and the
model.control CloudEvent drives it all through learn-one."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
import redis

from eventing.cloudevent_types import MODEL_CONTROL
from eventing.domains import get_domain
from functions.model_state import ab, ab_outcomes, ab_served
from functions.model_state.event_log import EventLog, LogEntry
from functions.model_state.online_model import OnlineModel
from functions.model_state.replica import ModelReplica, sync_replicas
from tests.functions.function_testkit import cloudevent
from tests.functions.streams import events
from tests.functions.test_model_state import assert_same_model, replay


def deliver(process: list[ModelReplica], event: dict, ce_id: str) -> bool:
    """One delivery to a learn-one process holding `process`: append (dedup), then each of its models applies it."""
    log = process[0].log
    appended = log.append("record", event, log.dedup_keys("/coelho/tests", ce_id, event, "record"))
    if appended.new:
        for replica in process:
            replica.learn_committed(LogEntry(appended.seq, "record", event, appended.t_ms), appended.paused_at)
    return appended.new


@pytest.mark.parametrize(
    "models",
    [("logreg_rus", "logreg"), ("logreg_rus", "logreg", "hoeffding_adaptive_tree")],
    ids=["two-models", "three-models"],
)
def test_several_models_learn_the_same_events_exactly_once(redis_url: str, models: tuple[str, ...]) -> None:
    domain = get_domain("tfd")
    stream = events("tfd", 900, seed=31)
    probes = events("tfd", 20, seed=97)
    ab.live_models(redis.Redis.from_url(redis_url), domain, models)  # seeds the live set
    # Two learn-one processes, each with its own connection and its replicas of every live model.
    processes = [sync_replicas(redis.Redis.from_url(redis_url), domain, "learner", []) for _ in range(2)]
    assert [[r.model_name for r in p] for p in processes] == [list(models)] * 2
    rng = random.Random(8)
    accepted = 0
    for i, event in enumerate(stream):
        first, other = (processes[0], processes[1]) if i % 2 else (processes[1], processes[0])
        accepted += deliver(first, event, f"ab-{i}")
        if rng.random() < 0.1:  # a redelivery of the same CloudEvent to the other process
            assert not deliver(other, event, f"ab-{i}")
        if rng.random() < 0.05:  # the same transaction again under another CloudEvent id
            assert not deliver(other, event, f"again-{i}")
    assert accepted == len(stream)
    client: Any = redis.Redis.from_url(redis_url)
    for process in processes:
        for replica in process:
            replica.catch_up()
            replica.write_summary()  # flushes the paired outcomes
            assert_same_model(replica.state, replay("tfd", [("record", e) for e in stream], replica.model_name), probes)
    # The paired outcomes: every model scored the same log positions, each once.
    held = {m: ab_outcomes.outcomes(client, domain, m) for m in models}
    assert all(list(h) == list(range(1, len(stream) + 1)) for h in held.values())
    assert len({tuple(v[0] for v in h.values()) for h in held.values()}) == 1  # the same truths
    result = ab_outcomes.compare(client, domain)
    assert len(result["pairs"]) == len(models) * (len(models) - 1) // 2
    assert all(p["n"] == len(stream) and p["verdict"] for p in result["pairs"])


def test_a_challenger_starts_from_the_log_start_or_from_now(redis_url: str) -> None:
    domain = get_domain("eta")
    client: Any = redis.Redis.from_url(redis_url)
    stream = events("eta", 400, seed=12)
    process = sync_replicas(client, domain, "learner", [])
    for i, event in enumerate(stream[:200]):
        deliver(process, event, f"s-{i}")
    challenger, third = "linear_regression", "adaptive_random_forest"
    added = ab.add_model(client, domain, challenger)
    assert (added["start"], added["start_seq"], added["to_replay"]) == ("start of the log", 0, 200)
    assert ab.add_model(client, domain, challenger)["added"] is False  # idempotent
    process = sync_replicas(client, domain, "learner", process)
    assert [r.model_name for r in process] == [domain.default_model, challenger]
    assert process[1].state.seq == 200  # replayed the log before joining
    # The log loses its start: a third model can only start from now.
    EventLog(client, domain).redis.xtrim(f"coelho:{domain.name}:log", minid="150-0", approximate=False)
    later = ab.add_model(client, domain, third)
    assert (later["start"], later["start_seq"]) == ("now", 200)
    process = sync_replicas(client, domain, "learner", process)
    for i, event in enumerate(stream[200:], start=200):
        deliver(process, event, f"s-{i}")
    for replica in process:
        replica.catch_up()
        replica.write_summary()  # flushes the paired outcomes
    assert_same_model(process[1].state, replay("eta", [("record", e) for e in stream], challenger), stream[:10])
    reference = OnlineModel.fresh(domain, third, seq=200)
    for seq, event in enumerate(stream[200:], start=201):
        reference.learn_one(seq, "record", event, 0)
    assert_same_model(process[2].state, reference, stream[:10])
    # Paired outcomes overlap on the positions both learned: the third model's only.
    pair = next(
        p for p in ab_outcomes.compare(client, domain)["pairs"] if {p["a"], p["b"]} == {domain.default_model, third}
    )
    assert pair["n"] == 200 and pair["first_seq"] == 201
    # Removing: not the champion, then the challenger goes.
    with pytest.raises(Exception, match="champion"):
        ab.remove_model(client, domain, domain.default_model)
    ab.remove_model(client, domain, third)
    assert [r.model_name for r in sync_replicas(client, domain, "learner", process)] == [
        domain.default_model,
        challenger,
    ]


def test_predict_routes_by_alias_and_split_and_scores_served_answers(redis_url: str) -> None:
    from functions.predict import Predictor

    domain = get_domain("tfd")
    client: Any = redis.Redis.from_url(redis_url)
    ab.live_models(client, domain, ("logreg_rus", "logreg"))
    learners = sync_replicas(client, domain, "learner", [])
    stream = events("tfd", 300, seed=5)
    for i, event in enumerate(stream[:200]):
        deliver(learners, event, f"r-{i}")
    predictor = Predictor(client)
    try:
        predictor.load()
        request = {k: v for k, v in stream[250].items() if k != "is_fraud"}
        assert predictor.predict(domain, request)["model"] == "logreg_rus"  # the first model before any checkpoint
        assert predictor.predict(domain, request, model="logreg")["model"] == "logreg"
        assert ab.promote(client, domain, "logreg")["champion"]["model"] == "logreg"
        predictor.refresh_routing()
        assert predictor.predict(domain, request)["model"] == "logreg"
        ab.rollback(client, domain)
        ab.after_checkpoint(client, domain, "logreg", 7, 200)  # no MLflow here: the alias moves in Redis only
        ab.set_split(client, domain, {"champion": 50, "challenger": 50})
        predictor.refresh_routing()
        users = {f"user-{i}" for i in range(200)}
        first = {u: predictor.predict(domain, {**request, "user_id": u})["model"] for u in users}
        assert set(first.values()) == {"logreg_rus", "logreg"}
        assert 60 < sum(m == "logreg" for m in first.values()) < 140
        assert all(
            predictor.predict(domain, {**request, "user_id": u})["model"] == m for u, m in first.items()
        )  # sticky
        # A served answer is scored when the event's label is learned, per served (model, version, mode).
        for event in stream[200:230]:
            predictor.predict(domain, {k: v for k, v in event.items() if k != "is_fraud"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not client.exists(f"coelho:tfd:served:{stream[229]['transaction_id']}"):
            time.sleep(0.05)
        for i, event in enumerate(stream[200:230], start=200):
            deliver(learners, event, f"r-{i}")
        for replica in learners:
            replica.write_summary()
        scores = ab_served.live_scores(client, domain)
        assert sum(s["scored"] for s in scores) >= 30 and {s["mode"] for s in scores} == {"live"}
        assert all(0 <= s["accuracy"] <= 1 for s in scores)
    finally:
        predictor.stop()


def test_promotion_under_load_never_fails_and_settles(redis_url: str) -> None:
    from functions.predict import Predictor

    domain = get_domain("tfd")
    client: Any = redis.Redis.from_url(redis_url)
    ab.live_models(client, domain, ("logreg_rus", "logreg"))
    learners = sync_replicas(client, domain, "learner", [])
    stream = events("tfd", 100, seed=9)
    for i, event in enumerate(stream):
        deliver(learners, event, f"p-{i}")
    predictor = Predictor(client)
    predictor.load()
    request = {k: v for k, v in stream[0].items() if k not in ("is_fraud", "transaction_id")}
    replies: list[tuple[float, str]] = []
    errors: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                replies.append((time.monotonic(), predictor.predict(domain, request)["model"]))
            except Exception as exc:
                errors.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.3)
        promoted_at = time.monotonic()
        ab.promote(client, domain, "logreg")
        time.sleep(2.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
        predictor.stop()
    assert not errors and len(replies) > 100
    assert {m for _, m in replies} <= {"logreg_rus", "logreg"}
    assert {m for t, m in replies if t > promoted_at + 2.0} == {"logreg"}


def test_model_control_cloudevent_through_learn_one(redis_url: str) -> None:
    from functions import learn

    app = learn.create()
    client = app.test_client()

    def control(data: dict) -> Any:
        message = cloudevent(MODEL_CONTROL, data)
        return client.post("/", headers=dict(message.headers), data=message.body)

    response = control({"domain": "ecci", "action": "add", "model": "dbstream_default"})
    assert response.status_code == 200, response.data
    assert response.headers["ce-type"] == "com.coelho.realtime.ecci.model.changed"
    assert response.json["start"] == "start of the log"
    learner = app.config["learner"]
    assert len(learner.replicas["ecci"]) == 2  # started at once in this process
    assert (
        control({"domain": "ecci", "action": "split", "weights": {"champion": 70, "challenger": 30}}).status_code == 200
    )
    assert control({"domain": "ecci", "action": "explode"}).status_code == 400
    assert control({"domain": "weather", "action": "add", "model": "x"}).status_code == 400
    assert control({"domain": "ecci", "action": "add", "model": "nope"}).json["fields"]["model"]
    assert control({"domain": "ecci", "action": "rollback"}).status_code == 400  # no earlier champion
    assert control({"domain": "ecci", "action": "remove", "model": "dbstream"}).status_code == 400  # the champion


def test_the_assistant_reads_the_comparison_without_writing(redis_url: str) -> None:
    import json

    from coelho.settings import Settings
    from functions.assistant.data import PlatformReader
    from functions.assistant.redaction import SecretRedactor
    from functions.assistant.tools import ToolBox

    domain = get_domain("tfd")
    client: Any = redis.Redis.from_url(redis_url)
    box = ToolBox(PlatformReader(Settings.load(), redis_url=redis_url), {}, SecretRedactor.from_environ({}))
    text, is_error = box.run("compare_models", {"domain": "tfd"})  # an empty Redis: nothing seeded, no pair
    assert not is_error and json.loads(text)["pairs"] == [] and not client.exists("coelho:tfd:live")
    ab.live_models(client, domain, ("logreg_rus", "logreg"))
    learners = sync_replicas(client, domain, "learner", [])
    for i, event in enumerate(events("tfd", 120, seed=3)):
        deliver(learners, event, f"t-{i}")
    for replica in learners:
        replica.write_summary()
    text, is_error = box.run("compare_models", {"domain": "tfd"})
    result = json.loads(text)
    assert not is_error and result["champion"] == "logreg_rus"
    assert result["pairs"][0]["n"] == 120 and "n=120 paired events" in result["pairs"][0]["verdict"]


def test_a_learner_ahead_of_a_wiped_log_starts_again_from_it(redis_url: str) -> None:
    """A learner that outlives its Redis state (flushed, or wiped by hand) must not skip the new log's first
    entries as if it had learned them, nor learn the rest on top of the old model."""
    domain = get_domain("tfd")
    client: Any = redis.Redis.from_url(redis_url)
    stale = sync_replicas(client, domain, "learner", [])
    for i, event in enumerate(events("tfd", 50, seed=1)):
        deliver(stale, event, f"old-{i}")
    client.flushall()
    stream = events("tfd", 80, seed=2)
    for i, event in enumerate(stream):
        deliver(stale, event, f"new-{i}")
    assert_same_model(stale[0].state, replay("tfd", [("record", e) for e in stream]), stream[:10])
