"""The event-log model state against a real (throwaway) Redis: exactly once, in order, replayable."""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

import pytest
import redis

from eventing.domains import get_domain
from functions.model_state import replica as replica_module
from functions.model_state.event_log import EventLog, LogEntry
from functions.model_state.keys import model_key
from functions.model_state.online_model import OnlineModel
from functions.model_state.replica import ModelReplica
from tests.functions.streams import events


def replay(domain_name: str, entries: list[tuple[str, dict]], model: str | None = None) -> OnlineModel:
    """The reference: the distinct events applied in one process, in order."""
    state = OnlineModel.fresh(get_domain(domain_name), model)
    for i, (kind, event) in enumerate(entries, start=1):
        state.learn_one(i, kind, event, 0)
    return state


def assert_same_model(a: OnlineModel, b: OnlineModel, probes: list[dict]) -> None:
    domain = a.domain
    assert (a.seq, a.events_learned) == (b.seq, b.events_learned)
    for event in probes:
        x = domain.features(event)
        pa, pb = a.predict_one(x), b.predict_one(x)
        if isinstance(pa, float):
            assert pa == pytest.approx(pb, rel=1e-9, abs=1e-12)
        else:
            assert pa == pb
    va, vb = a.metric_values(), b.metric_values()
    assert va.keys() == vb.keys()
    for name in va:
        if isinstance(va[name], float):
            assert va[name] == pytest.approx(vb[name], rel=1e-9, abs=1e-12), name
        else:
            assert va[name] == vb[name], name


def send(replica: ModelReplica, event: dict, ce_id: str, kind: str = "record") -> bool:
    log = replica.log
    appended = log.append(kind, event, log.dedup_keys("/coelho/tests", ce_id, event, kind))
    if appended.new:
        replica.learn_committed(LogEntry(appended.seq, kind, event, appended.t_ms), appended.paused_at)
    return appended.new


@pytest.mark.parametrize("domain_name", ["tfd", "eta", "ecci"])
def test_duplicates_and_two_replicas_end_as_an_in_process_replay(redis_url: str, domain_name: str) -> None:
    domain = get_domain(domain_name)
    stream = events(domain_name, 1500, seed=3)
    probes = events(domain_name, 30, seed=99)
    # Two learner replicas, each with its own connection, as behind a load balancer.
    a = ModelReplica(redis.Redis.from_url(redis_url), domain, role="learner")
    b = ModelReplica(redis.Redis.from_url(redis_url), domain, role="learner")
    rng = random.Random(1)
    accepted = 0
    for i, event in enumerate(stream):
        first, other = (a, b) if i % 2 else (b, a)
        accepted += send(first, event, f"id-{i}")
        if rng.random() < 0.1:  # redelivery of the same CloudEvent to the other replica
            assert not send(other, event, f"id-{i}")
        if rng.random() < 0.05:  # the same record again under a new CloudEvent id (a producer retry)
            assert not send(other, event, f"retry-{i}")
    assert accepted == len(stream)
    a.catch_up()
    b.catch_up()
    reference = replay(domain_name, [("record", e) for e in stream])
    assert_same_model(a.state, reference, probes)
    assert_same_model(b.state, reference, probes)


def test_concurrent_replicas_apply_the_log_order(redis_url: str) -> None:
    domain = get_domain("tfd")
    stream = events("tfd", 1200, seed=5)
    replicas = [ModelReplica(redis.Redis.from_url(redis_url), domain, role="learner") for _ in range(3)]

    def worker(k: int) -> None:
        for i in range(k, len(stream), 3):
            send(replicas[k], stream[i], f"c-{i}")
            send(replicas[(k + 1) % 3], stream[i], f"c-{i}")  # every event also redelivered elsewhere

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log_order = [(e.kind, e.event) for e in EventLog(redis.Redis.from_url(redis_url), domain).read_after(0, 10_000)]
    assert sorted(e["transaction_id"] for _, e in log_order) == sorted(e["transaction_id"] for e in stream)
    reference = replay("tfd", log_order)
    for replica in replicas:
        replica.catch_up()
        assert_same_model(replica.state, reference, stream[:20])


def test_cold_replica_loads_snapshot_and_replays_after_trim(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replica_module, "SNAPSHOT_EVERY", 200)
    monkeypatch.setattr(replica_module, "TRIM_MARGIN", 0)
    domain = get_domain("eta")
    stream = events("eta", 1050, seed=11)
    learner = ModelReplica(redis.Redis.from_url(redis_url), domain, role="learner")
    for i, event in enumerate(stream):
        send(learner, event, f"e-{i}")
    client: Any = redis.Redis.from_url(redis_url)
    first = EventLog(client, domain).read_after(0, 10)[0].seq
    assert first == 1000, "log trimmed below the snapshot"
    cold = ModelReplica(client, domain, role="follower")
    cold.load_snapshot()
    assert cold.state.seq == 1000
    cold.catch_up()
    assert_same_model(cold.state, replay("eta", [("record", e) for e in stream]), stream[:20])
    # a replica that fell behind the trimmed log reloads the snapshot instead of skipping events
    behind = ModelReplica(client, domain, role="follower")
    behind.catch_up()
    assert behind.state.seq == len(stream)
    history = client.zrange(model_key("eta", domain.default_model, "history"), 0, -1)
    assert [json.loads(h)["seq"] for h in history] == list(range(100, 1001, 100))


def test_pause_logs_events_and_resume_catches_up(redis_url: str) -> None:
    domain = get_domain("ecci")
    stream = events("ecci", 300, seed=2)
    learner = ModelReplica(redis.Redis.from_url(redis_url), domain, role="learner")
    follower = ModelReplica(redis.Redis.from_url(redis_url), domain, role="follower")
    for i, event in enumerate(stream[:100]):
        send(learner, event, f"p-{i}")
    assert learner.log.pause() == 100
    for i, event in enumerate(stream[100:], start=100):
        assert send(learner, event, f"p-{i}")
    follower.catch_up()
    assert learner.state.seq == follower.state.seq == 100
    learner.log.resume()
    learner.catch_up()
    follower.catch_up()
    reference = replay("ecci", [("record", e) for e in stream])
    assert_same_model(learner.state, reference, stream[:20])
    assert_same_model(follower.state, reference, stream[:20])


def test_delayed_label_is_scored_with_the_prediction_made_on_arrival(redis_url: str) -> None:
    domain = get_domain("tfd")
    stream = events("tfd", 400, seed=8)
    learner = ModelReplica(redis.Redis.from_url(redis_url), domain, role="learner")
    for i, event in enumerate(stream[:300]):
        send(learner, event, f"l-{i}")
    record = {k: v for k, v in stream[300].items() if k != "is_fraud"}
    expected = learner.state.predict_one(domain.features(record))
    assert send(learner, record, "late-record", kind="unlabeled")
    for i, event in enumerate(stream[301:350], start=301):  # the model moves on meanwhile
        send(learner, event, f"l-{i}")
    assert learner.state.pending[record["transaction_id"]][1] == expected
    label = {
        "transaction_id": record["transaction_id"],
        "user_id": record["user_id"],
        "is_fraud": stream[300]["is_fraud"],
    }
    learned = learner.state.events_learned
    assert send(learner, label, "the-label", kind="label")
    assert not send(learner, label, "the-label-again", kind="label")  # a label counts once
    assert learner.state.events_learned == learned + 1
    assert record["transaction_id"] not in learner.state.pending


def test_slim_snapshot_keeps_predictions_after_further_learning() -> None:
    domain = get_domain("eta")
    stream = events("eta", 1500, seed=4)
    state = OnlineModel.fresh(domain, "hoeffding_adaptive_tree")
    for i, e in enumerate(stream[:1000], start=1):
        state.learn_one(i, "record", e, 0)
    copy = OnlineModel.from_bytes(state.to_bytes())
    for i, e in enumerate(stream[1000:], start=1001):
        state.learn_one(i, "record", e, 0)
        copy.learn_one(i, "record", e, 0)
    assert_same_model(state, copy, stream[:50])


def test_out_of_order_requests_of_one_process_wait_for_each_other_instead_of_rereading_the_log(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests append in one order and reach the replica in another: a later entry waits for the earlier
    ones announced by this process (no read of the log back from Redis); one appended elsewhere is read back."""
    domain = get_domain("tfd")
    stream = events("tfd", 3, seed=21)
    replica = ModelReplica(redis.Redis.from_url(redis_url), domain, role="learner")
    reads: list[int] = []
    real_read = replica.log.read_after
    monkeypatch.setattr(replica.log, "read_after", lambda seq, count=2000: reads.append(seq) or real_read(seq, count))
    log = replica.log
    entries = []
    for i, event in enumerate(stream[:2]):
        appended = log.append("record", event, log.dedup_keys("/coelho/tests", f"w-{i}", event, "record"))
        replica.expect(appended.seq)
        entries.append(LogEntry(appended.seq, "record", event, appended.t_ms))
    second = threading.Thread(target=replica.learn_committed, args=(entries[1], None))
    second.start()  # seq 2 first: it waits for seq 1
    time.sleep(0.05)
    assert replica.state.seq == 0
    replica.learn_committed(entries[0], None)
    second.join(5)
    assert replica.state.seq == 2 and reads == []
    # an entry appended by another replica (not announced here) is read back from the log at once
    other = ModelReplica(redis.Redis.from_url(redis_url), domain, role="learner")
    send(other, stream[2], "w-2")
    fourth = events("tfd", 1, seed=22)[0]
    appended = log.append("record", fourth, log.dedup_keys("/coelho/tests", "w-3", fourth, "record"))
    started = time.monotonic()
    replica.learn_committed(LogEntry(appended.seq, "record", fourth, appended.t_ms), None)
    assert replica.state.seq == 4 and reads and time.monotonic() - started < replica_module.DIRECT_WAIT_S
    reference = replay("tfd", [("record", e) for e in [*stream, fourth]])
    assert_same_model(replica.state, reference, stream)
