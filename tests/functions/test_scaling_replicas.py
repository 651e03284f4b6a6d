"""Scaling out one domain (docs/scaling.md): three learn-one and three predict-one replicas of a domain, as three
pods behind each Knative Service, against one Redis.

A stream is delivered round-robin over the three learners (as the Broker's dispatcher spreads an ordered Trigger's
partitions over a Service's pods). Every event must be applied exactly once, in one shared order (sequence numbers
1..N with no gap or repeat, the log in delivery order); each learner's test-then-train answer must be the one a
single process replaying the log would give at that position, whichever replica learned the events before it; and
the three predict-one replicas must reach the same sequence number and give the same predictions, equal to that
single-process replay.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests

from eventing.domains import get_domain
from functions.model_state.online_model import OnlineModel
from tests.functions.function_testkit import cloudevent, empty_domain, function_process, post
from tests.functions.streams import events
from tests.functions.test_model_state import replay

pytestmark = pytest.mark.stack

DOMAIN = "eta"
REPLICAS = 3
EVENTS = 900


@pytest.fixture(scope="module")
def stack(platform: Any) -> Any:
    platform.start(["redis", "learn", "predict", "checkpoint"], producers=False)
    return platform


@pytest.fixture(scope="module")
def replicas(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[str]]]:
    """The domain's state emptied, then three learn-one and three predict-one replicas: the platform's own
    (started again on the empty state) and two more processes of each.

    The session's platform may still run what earlier tests started: the router (delivering events still waiting
    in Kafka, and its PingSource triggering checkpoints), producers, and learn-one holding the domain's models in
    memory (it re-seeds an emptied Redis from them). All of those stop before the state is emptied, so the stream
    below is the only one this domain sees and no registered version comes back to restore from."""
    feeders = ["router", *(name for name in stack.entries() if name.startswith("producer_"))]
    stack.stop([*feeders, "learn", "predict", "checkpoint"])
    empty_domain(stack.settings, DOMAIN)
    stack.start(["redis", "learn", "predict", "checkpoint"], producers=False)
    logs = tmp_path_factory.mktemp("replicas")
    with contextlib.ExitStack() as extra:
        urls: dict[str, list[str]] = {
            name: [stack.settings.url(name)]
            + [extra.enter_context(function_process(stack.settings, name, logs)) for _ in range(REPLICAS - 1)]
            for name in ("learn", "predict")
        }
        yield urls


def deliver(url: str, message: Any, session: requests.Session) -> dict[str, Any]:
    """At-least-once, like the Knative dispatcher: retried until a 2xx; the `learned` reply's data."""
    for _ in range(200):
        try:
            response = session.post(url, data=message.body, headers=dict(message.headers), timeout=10)
        except requests.RequestException:
            time.sleep(0.05)
            continue
        if response.status_code < 300:
            return dict(json.loads(response.content))
        assert response.status_code >= 500, response.text
        time.sleep(0.05)
    raise AssertionError("event never delivered")


def test_three_learners_apply_one_stream_once_in_one_order(stack: Any, replicas: dict[str, list[str]]) -> None:
    domain = get_domain(DOMAIN)
    stream = events(DOMAIN, EVENTS, seed=57)
    reference = OnlineModel.fresh(domain)
    session = requests.Session()
    seqs: list[int] = []
    compared = 0
    by_replica = [0] * REPLICAS
    for i, event in enumerate(stream):
        learner = i % REPLICAS
        message = cloudevent(domain.type("record"), event, ce_id=f"scale-{i}", partitionkey=event["driver_id"])
        reply = deliver(replicas["learn"][learner], message, session)
        assert not reply["duplicate"], reply
        seqs.append(reply["seq"])
        by_replica[learner] += 1
        # Test-then-train: the replica's answer before learning equals one process's at the same position, so
        # the replica applied every event the two others learned before this one, in the same order.
        expected = reference.predict_one(domain.features(event))
        for model in reply["models"]:
            if model["model"] == reference.model_name and model["prediction"] is not None:
                assert model["prediction"] == pytest.approx(expected, rel=1e-9, abs=1e-9), (i, learner)
                compared += 1
        reference.learn_one(i + 1, "record", event, 0)
        # A redelivery to another replica is recognised as a duplicate there.
        if i % 97 == 0:
            again = deliver(replicas["learn"][(learner + 1) % REPLICAS], message, session)
            assert again["duplicate"] and again["seq"] == reply["seq"]
    assert seqs == list(range(1, EVENTS + 1)), "sequence numbers are not one gap-free shared order"
    assert by_replica == [EVENTS // REPLICAS] * REPLICAS
    assert compared >= EVENTS * 0.9, f"only {compared} of {EVENTS} replies carried the model's answer"
    client = redis.Redis.from_url(stack.settings.redis_url)
    logged = [json.loads(f[b"d"])["trip_id"] for _, f in client.xrange(f"coelho:{DOMAIN}:log")]
    assert logged == [e["trip_id"] for e in stream]


def test_three_predictors_agree_with_one_another_and_with_one_process(
    stack: Any, replicas: dict[str, list[str]]
) -> None:
    domain = get_domain(DOMAIN)
    stream = events(DOMAIN, EVENTS, seed=57)
    probes = events(DOMAIN, 20, seed=91)
    reference = replay(DOMAIN, [("record", e) for e in stream])
    deadline = time.monotonic() + 30
    for url in replicas["predict"]:  # each follows the shared log to its head
        while True:
            answer = requests.post(f"{url}/predict/{DOMAIN}", json=probes[0], timeout=5).json()
            if answer["seq"] == EVENTS:
                break
            assert time.monotonic() < deadline, f"{url} stuck at seq {answer['seq']} of {EVENTS}"
            time.sleep(0.1)
    for event in probes:
        message = cloudevent(domain.type("prediction.requested"), event)
        answers = [post(url, message).json() for url in replicas["predict"]]
        assert len({a["seq"] for a in answers}) == 1 and answers[0]["seq"] == EVENTS
        expected = reference.predict_one(domain.features(event))
        for answer in answers:
            assert answer["eta_seconds"] == pytest.approx(expected, rel=1e-9), (answers, expected)
