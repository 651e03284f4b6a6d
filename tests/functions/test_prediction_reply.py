"""predict-one's reply, built by the model state, has exactly the fields its domain declares, with the declared
types, for every domain and model, before and after learning; the per-task objects behind it."""

from __future__ import annotations

import math
import typing
from typing import Any

import pytest
import redis

from eventing.domain import Task
from eventing.domains import DOMAINS
from eventing.schema import check_values
from functions.model_state.online_model import OnlineModel
from functions.model_state.tasks import TASKS, task_of
from tests.functions import streams
from tests.functions.streams import events

MODELS = [(name, model) for name, d in DOMAINS.items() for model in d.model_factories]


def learned(domain_name: str, model: str, n: int) -> OnlineModel:
    state = OnlineModel.fresh(DOMAINS[domain_name], model)
    for seq, event in enumerate(events(domain_name, n, seed=4), start=1):
        state.learn_one(seq, "record", event, 0)
    assert state.learn_errors == 0, state.last_error
    return state


def reply_to(state: OnlineModel, event: dict, version: int | None = None) -> dict:
    d = state.domain
    clean = d.validate({k: v for k, v in event.items() if k != d.target}, purpose="prediction")
    return state.reply(state.predict_one(d.features(clean)), version, clean)


@pytest.mark.parametrize(("domain_name", "model"), MODELS)
def test_every_reply_has_exactly_the_declared_fields(domain_name: str, model: str) -> None:
    d = DOMAINS[domain_name]
    declared = [f.name for f in d.reply_fields()]
    for state in (OnlineModel.fresh(d, model), learned(domain_name, model, 60)):
        for event in events(domain_name, 5, seed=9):
            for version in (None, 3):
                reply = reply_to(state, event, version)
                assert check_values(d.reply_fields(), reply) == {}, reply
                assert list(reply) == declared
                assert (reply["domain"], reply["model"], reply["version"]) == (d.name, model, version)
                assert (reply["events_learned"], reply["seq"]) == (state.events_learned, state.seq)
                assert reply[d.id_field] == event[d.id_field]
            anonymous = {k: v for k, v in event.items() if k != d.id_field}
            reply = reply_to(state, anonymous)
            assert check_values(d.reply_fields(), reply) == {} and d.id_field not in reply


@pytest.mark.parametrize("domain_name", list(DOMAINS))
def test_the_prediction_fields_are_the_models_answer(domain_name: str) -> None:
    d = DOMAINS[domain_name]
    state = learned(domain_name, d.default_model, 300)
    for event in events(domain_name, 10, seed=11):
        raw = state.predict_one(d.features(event))
        reply = reply_to(state, event)
        if d.task == "clustering":
            expected = d.prediction_values(raw, state.describe_cluster(raw))
        else:
            expected = d.prediction_values(raw)
        assert {f.name: reply[f.name] for f in d.prediction_fields} == expected


def test_one_task_object_per_task_and_every_domain_has_one() -> None:
    assert set(TASKS) == set(typing.get_args(Task))
    assert all(t.name == name for name, t in TASKS.items())
    for d in DOMAINS.values():
        assert task_of(d) is TASKS[d.task] and OnlineModel.fresh(d).task is TASKS[d.task]


@pytest.mark.parametrize("domain_name", list(DOMAINS))
def test_summary_and_history_add_the_tasks_counts(domain_name: str) -> None:
    d = DOMAINS[domain_name]
    state = learned(domain_name, d.default_model, 200)
    task = task_of(d)
    summary = state.summary()
    assert task.history(state) == {name: summary[name] for name in task.summary_counts}
    if d.task == "clustering":
        assert {"n_clusters", "n_micro_clusters", "clusters"} <= set(summary)
    else:
        assert not {"n_clusters", "clusters"} & set(summary)


@pytest.mark.parametrize("domain_name", list(DOMAINS))
def test_the_assistants_prediction_row_uses_the_declared_names(domain_name: str) -> None:
    d = DOMAINS[domain_name]
    state = learned(domain_name, d.default_model, 100)
    event = events(domain_name, 1, seed=12)[0]
    raw = state.predict_one(d.features(event))
    row = task_of(d).prediction_row(state, event, raw)
    target = [f"actual_{d.target}"] if d.target else []
    assert list(row) == ["id", "timestamp", *(f.name for f in d.prediction_fields), *target, *d.headline_fields]
    assert row["id"] == event[d.id_field]
    if d.target:
        assert row[f"actual_{d.target}"] == event[d.target]
    if task_of(d).always_answers:  # no answer (an event the model could not learn) is said, not made up
        assert "note" in task_of(d).prediction_row(state, event, None)


def test_predict_one_answers_the_declared_reply(redis_url: str) -> None:
    from functions.predict import Predictor

    client = redis.Redis.from_url(redis_url)
    learners = streams.teach(client, 200, "/t")
    predictor = Predictor(client)
    try:
        for name, d in DOMAINS.items():
            for event in events(name, 3, seed=13):
                reply = predictor.predict(d, event)
                assert check_values(d.reply_fields(), reply) == {}, reply
                assert _same_reply(reply, reply_to(learners[name].state, event)), (name, reply)
    finally:
        predictor.follower.stop()


def _same_reply(got: dict[str, Any], want: dict[str, Any]) -> bool:
    """Equal replies; a float may differ in its last bits (a model reloaded from a snapshot and replayed adds in
    another order than the one that learned each event in turn)."""
    if got.keys() != want.keys():
        return False
    return all(
        math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) if isinstance(a, float) and isinstance(b, float) else a == b
        for a, b in ((got[k], want[k]) for k in got)
    )
