"""Redis wiped while the platform runs: no replica starts its model again from scratch. learn-one re-seeds Redis from
the models it holds (functions/model_state/replica.py `reseed`), readers keep theirs meanwhile, and everything
learned after equals an in-process replay of every event."""

from __future__ import annotations

import pytest
import redis
from prometheus_client import REGISTRY

from eventing.domains import get_domain
from functions.learn import Learner
from functions.model_state.replica import ModelReplica
from tests.functions.streams import events
from tests.functions.test_model_state import assert_same_model, replay


def lost(outcome: str) -> float:
    return REGISTRY.get_sample_value("coelho_model_log_lost_total", {"domain": "tfd", "outcome": outcome}) or 0.0


def learn(learner: Learner, batch: list[dict], prefix: str) -> None:
    domain = get_domain("tfd")
    for i, event in enumerate(batch):
        committed = learner.commit(domain, "record", "/tests", f"{prefix}-{i}", event, None)
        assert committed.appended.new
        learner.learn(committed)


def test_redis_wiped_under_running_replicas_is_reseeded_not_reset(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COELHO_MODEL_TFD", "logreg_rus")
    # A database of its own: the Learner's threads outlive the test and must not write into the next test's keys.
    redis_url = redis_url.rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(redis_url).flushdb()
    stream = events("tfd", 60, seed=81)
    probes = events("tfd", 20, seed=82)
    learner = Learner(redis.Redis.from_url(redis_url))
    learner.load()
    learn(learner, stream[:40], "a")
    follower = ModelReplica(redis.Redis.from_url(redis_url), get_domain("tfd"), "logreg_rus")
    follower.catch_up()
    assert follower.state.seq == 40

    redis.Redis.from_url(redis_url).flushdb()  # Redis wiped (or restarted without its data)
    kept = lost("kept")
    follower._reset_checked_at = 0.0
    follower.catch_up()
    assert (follower.state.seq, follower.state.events_learned) == (40, 40)  # not a fresh model
    assert lost("kept") == kept + 1

    reseeded = lost("reseeded")
    learn(learner, stream[40:], "b")  # the first append finds the log gone: re-seed, then append at 41
    assert lost("reseeded") == reseeded + 1
    follower.catch_up()
    reference = replay("tfd", [("record", e) for e in stream], "logreg_rus")
    (mine,) = learner.replicas["tfd"]
    mine.catch_up()
    assert_same_model(mine.state, reference, probes)
    assert_same_model(follower.state, reference, probes)
    # A process started now loads the re-seeded snapshot and replays the rest: the same model.
    cold = ModelReplica(redis.Redis.from_url(redis_url), get_domain("tfd"), "logreg_rus")
    assert cold.load_snapshot()
    cold.catch_up()
    assert_same_model(cold.state, reference, probes)
    learner.loaded = False  # its model-set watcher idles from now on
