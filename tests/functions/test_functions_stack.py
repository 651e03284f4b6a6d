"""learn-one, predict-one and checkpoint as real processes against the real embedded services.

One stream with injected duplicates goes through two learner replicas; one of them is killed with -9 mid-stream
and restarted; the sender retries like the Knative dispatcher (at-least-once). The models the processes hold
must equal an in-process replay of the distinct events.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests

from eventing.domains import get_domain
from functions.model_state.keys import model_key
from functions.model_state.online_model import OnlineModel
from functions.model_state.replica import ModelReplica
from tests.functions.function_testkit import cloudevent, empty_domain, function_env, function_process, post
from tests.functions.streams import events
from tests.functions.test_model_state import assert_same_model, replay
from tests.prometheus_text import family_names

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def stack(platform: Any) -> Any:
    platform.start(["redis", "learn", "predict", "checkpoint"], producers=False)
    return platform


@pytest.fixture()
def second_learner(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Another learn-one replica on its own port, as a second pod behind the same Service. One per test, started on
    an empty tfd state: a learner that outlives Redis's state would re-seed Redis from its models (ADR 0092)."""
    empty_domain(stack.settings, "tfd")
    with function_process(stack.settings, "learn", tmp_path_factory.mktemp("learn2")) as url:
        yield url


def client(stack: Any) -> Any:
    return redis.Redis.from_url(stack.settings.redis_url)


def deliver(urls: list[str], message: Any, session: requests.Session, path: str = "") -> dict:
    """At-least-once delivery: retry (any replica) until a 2xx, like the Knative dispatcher. The `learned` reply's
    data, or {} for a 204 (path "/?reply=none", as the learn Triggers deliver)."""
    for attempt in range(400):
        url = urls[attempt % len(urls)] + path
        try:
            response = session.post(url, data=message.body, headers=dict(message.headers), timeout=10)
        except requests.RequestException:
            time.sleep(0.05)
            continue
        if response.status_code == 204:
            return {}
        if response.status_code < 300:
            return dict(json.loads(response.content))
        assert response.status_code >= 500, response.text
        time.sleep(0.05)
    raise AssertionError("event never delivered")


def test_failure_contract(stack: Any) -> None:
    learn, predict, checkpoint = (stack.settings.url(n) for n in ("learn", "predict", "checkpoint"))
    tfd = get_domain("tfd")
    hello = cloudevent("boson.fn", {"message": "Hello World"})  # kn func invoke's defaults
    for url in (learn, predict, checkpoint):
        response = post(url, hello)
        assert response.status_code == 400
        assert "boson.fn" in response.json()["error"]
        assert response.json()["accepted_types"]
    assert tfd.type("record") in post(learn, hello).json()["accepted_types"]
    bad = dict(events("tfd", 1)[0], amount=-5)
    response = post(learn, cloudevent(tfd.type("record"), bad))
    assert response.status_code == 400
    assert "amount" in response.json()["fields"]
    response = post(predict, cloudevent(tfd.type("prediction.requested"), {"amount": "lots"}))
    assert response.status_code == 400 and "amount" in response.json()["fields"]
    response = requests.post(learn, json={"amount": 3}, timeout=5)
    assert response.status_code == 400 and "not a CloudEvent" in response.json()["error"]
    response = requests.post(predict + "/predict/tfd", json={"amount": 3}, timeout=5)
    assert response.status_code == 400 and "currency" in response.json()["fields"]
    for url in (learn, predict, checkpoint):
        assert requests.get(url + "/health/liveness", timeout=5).status_code == 200
        assert "coelho_function_requests" in family_names(requests.get(url + "/metrics", timeout=5).text)


@pytest.mark.parametrize("path", ["", "/?reply=none"], ids=["with-reply", "trigger-no-reply"])
def test_exactly_once_with_duplicates_kill_and_two_replicas(stack: Any, second_learner: str, path: str) -> None:
    """Direct requests (the reply says what was done) and the learn Triggers' deliveries (204 at once, the applier
    thread learns in batches, ADR 0076) end with the same model as an in-process replay of the distinct events."""
    domain = get_domain("tfd")
    quiet = bool(path)
    empty_domain(stack.settings, "tfd")
    stack.restart("learn")  # a learner that starts from this empty state
    stream = events("tfd", 2500, seed=21)
    probes = events("tfd", 25, seed=77)
    urls = [stack.settings.url("learn"), second_learner]
    rng = random.Random(5)
    killed = threading.Event()

    def kill_and_restart() -> None:
        stack.kill("learn")
        killed.set()
        stack.restart("learn")

    session = requests.Session()
    killer = None
    seqs = set()
    for i, event in enumerate(stream):
        message = cloudevent(domain.type("record"), event, ce_id=f"tx-{i}", partitionkey=event["user_id"])
        reply = deliver(urls if i % 2 else urls[::-1], message, session, path)
        seqs.add(reply.get("seq", i + 1))
        if rng.random() < 0.1:
            assert deliver(urls, message, session, path).get("duplicate", True) is True
        if rng.random() < 0.03:  # same transaction under a new CloudEvent id
            assert deliver(urls, cloudevent(domain.type("record"), event), session, path).get("duplicate", True) is True
        if i == 800:
            killer = threading.Thread(target=kill_and_restart)
            killer.start()
    assert killer is not None
    killer.join()
    assert killed.is_set()
    assert seqs == set(range(1, len(stream) + 1))
    # The log: every transaction exactly once, in delivery order (what a 204 cannot tell, the log does).
    logged = [json.loads(f[b"d"])["transaction_id"] for _, f in client(stack).xrange("coelho:tfd:log")]
    assert logged == [e["transaction_id"] for e in stream]
    reference = replay("tfd", [("record", e) for e in stream])
    # The log replayed in another process (this one) equals the reference.
    fresh = ModelReplica(client(stack), domain, role="follower")
    fresh.load_snapshot()
    fresh.catch_up()
    assert_same_model(fresh.state, reference, probes)
    # The learners' own in-memory models: their snapshot at seq 2000 equals the reference at 2000.
    snapshot_key = model_key("tfd", domain.default_model, "snapshot")
    deadline = time.monotonic() + 30
    while quiet and int(client(stack).hget(snapshot_key, "seq") or 0) < 2000:  # the batch_learners may still be at it
        assert time.monotonic() < deadline, "no learner wrote its snapshot at seq 2000"
        time.sleep(0.1)
    blob = client(stack).hget(snapshot_key, "blob")
    snap = OnlineModel.from_bytes(blob)
    assert snap.seq == 2000
    assert_same_model(snap, replay("tfd", [("record", e) for e in stream[:2000]]), probes)
    # predict-one follows the log: once it reaches the head, the same predictions as the reference.
    predict = stack.settings.url("predict")
    deadline = time.monotonic() + 30
    while True:
        answer = requests.post(f"{predict}/predict/tfd", json=probes[0], timeout=5).json()
        if answer["seq"] == len(stream) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert answer["seq"] == len(stream) and answer["events_learned"] == len(stream)
    for event in probes[:10]:
        answer = post(predict, cloudevent(domain.type("prediction.requested"), event)).json()
        expected = reference.predict_one(domain.features(event))
        assert answer["fraud_probability"] == pytest.approx(expected, rel=1e-9)
        assert answer["risk_level"] in ("low", "medium", "high")


def test_prediction_right_after_learning_reflects_it(stack: Any) -> None:
    domain = get_domain("eta")
    learn, predict = stack.settings.url("learn"), stack.settings.url("predict")
    stream = events("eta", 300, seed=31)
    session = requests.Session()
    probe = stream[0]
    before = requests.post(f"{predict}/predict/eta", json=probe, timeout=5).json()
    for event in stream:
        deliver([learn], cloudevent(domain.type("record"), event), session)
    learned = deliver([learn], cloudevent(domain.type("record"), events("eta", 301, seed=31)[-1]), session)
    started = time.monotonic()
    while True:
        after = requests.post(f"{predict}/predict/eta", json=probe, timeout=5).json()
        if after["seq"] >= learned["seq"]:
            break
        assert time.monotonic() - started < 1.0, "prediction not fresh after 1 s"
        time.sleep(0.02)
    assert after["events_learned"] >= before["events_learned"] + 301
    assert after["eta_seconds"] != before["eta_seconds"]
    assert after["eta_minutes"] == pytest.approx(after["eta_seconds"] / 60)


def test_pause_and_resume_lose_nothing(stack: Any) -> None:
    from click.testing import CliRunner

    from coelho.models_command import models
    from coelho.platform_commands import training

    domain = get_domain("ecci")
    learn = stack.settings.url("learn")
    env = {**function_env(stack.settings, "learn")}
    runner = CliRunner()
    stream = events("ecci", 200, seed=41)
    session = requests.Session()
    for event in stream[:100]:
        deliver([learn], cloudevent(domain.type("record"), event), session)
    result = runner.invoke(training, ["pause", "ecci"], env=env)
    assert result.exit_code == 0, result.output
    for event in stream[100:]:
        reply = deliver([learn], cloudevent(domain.type("record"), event), session)
        assert reply["paused"] is True and reply["models"][0]["applied"] is False
    listed = json.loads(runner.invoke(models, ["--json"], env=env).output)
    row = next(r for r in listed if r["domain"] == "ecci")
    assert row["training"] == "paused" and row["behind"] >= 100  # logged while paused, not applied
    text = runner.invoke(models, [], env=env).output
    assert any(line.startswith("ecci") and "paused" in line and "behind" in line for line in text.splitlines()), text
    result = runner.invoke(training, ["resume", "ecci"], env=env)
    assert result.exit_code == 0, result.output
    reply = deliver([learn], cloudevent(domain.type("record"), events("ecci", 201, seed=41)[-1]), session)
    assert reply["models"][0]["applied"] is True
    fresh = ModelReplica(client(stack), domain, role="follower")
    fresh.load_snapshot()
    fresh.catch_up()
    assert fresh.state.seq == reply["seq"]
    answer = requests.post(f"{stack.settings.url('predict')}/predict/ecci", json=stream[0], timeout=5).json()
    assert "cluster" in answer and answer["cluster_description"]


def test_checkpoint_registers_versions_and_restores_an_empty_redis(stack: Any) -> None:
    import mlflow
    from minio import Minio

    settings = stack.settings
    domain = get_domain("tfd")
    learn = settings.url("learn")
    session = requests.Session()
    for event in events("tfd", 50, seed=51):
        deliver([learn], cloudevent(domain.type("record"), event), session)
    response = post(settings.url("checkpoint"), cloudevent("com.coelho.realtime.checkpoint.requested", {}), timeout=120)
    assert response.status_code == 200, response.text
    records = json.loads(response.content)["checkpoints"]
    assert {r["domain"] for r in records} >= {"tfd", "eta", "ecci"}
    tfd_record = next(r for r in records if r["domain"] == "tfd")
    mlflow_client = mlflow.tracking.MlflowClient(tracking_uri=settings.mlflow_uri)
    version = mlflow_client.get_model_version("coelho-tfd", str(tfd_record["version"]))
    assert version.tags["events_learned"] == str(tfd_record["events_learned"])
    s3 = Minio(
        f"{settings.host}:{settings.ports['s3']}",
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        secure=False,
    )
    objects = [o.object_name for o in s3.list_objects("mlflow-artifacts", recursive=True)]
    assert any(tfd_record["run_id"] in name and name.endswith("state.pkl.lz4") for name in objects), objects[:5]
    # Empty Redis: learn-one restores every model from its latest registered version.
    r = client(stack)
    r.flushall()
    stack.restart("learn")
    restored = ModelReplica(r, domain, role="follower")
    assert restored.load_snapshot()
    assert restored.state.seq == tfd_record["seq"]
    assert restored.state.events_learned == tfd_record["events_learned"]
    reply = deliver([learn], cloudevent(domain.type("record"), events("tfd", 1, seed=52)[0]), session)
    assert reply["seq"] == tfd_record["seq"] + 1
    assert reply["models"][0]["events_learned"] == tfd_record["events_learned"] + 1


def test_redis_down_gives_503(stack: Any) -> None:
    domain = get_domain("tfd")
    learn = stack.settings.url("learn")
    stack.kill("redis")
    try:
        response = post(learn, cloudevent(domain.type("record"), events("tfd", 1, seed=61)[0]), timeout=20)
        assert response.status_code == 503, response.text
        assert "retry" in response.json()["error"]
    finally:
        stack.restart("redis")


def test_coelho_invoke_with_kn_defaults_lists_accepted_types(stack: Any) -> None:
    from click.testing import CliRunner

    from coelho.platform_commands import invoke

    runner = CliRunner()
    env = function_env(stack.settings, "learn")
    result = runner.invoke(invoke, ["learn"], env=env)
    assert result.exit_code == 1
    assert "HTTP 400" in result.output and "accepted_types" in result.output
    record = json.dumps(events("eta", 1, seed=71)[0])
    result = runner.invoke(
        invoke,
        ["learn", "--type", get_domain("eta").type("record"), "--data", record, "-e", "partitionkey=d1"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert "HTTP 200" in result.output and "ce-type: com.coelho.realtime.eta.learned" in result.output.lower()
