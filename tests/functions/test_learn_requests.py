"""learn-one through the middleware's one request path: binary and structured mode learn the same and answer the
same; errors, `?reply=none`, the batch learner; no POST / ever reaches Flask."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import pytest
import redis
from flask import Flask
from prometheus_client import REGISTRY

from eventing.cloudevent_types import TRAINING_CONTROL
from eventing.domains import DOMAINS
from functions import learn
from functions.middleware.app import REQUESTS  # noqa: F401  (registers the function metrics)
from functions.model_state.batch_learner import BatchLearner
from tests.functions.function_testkit import cloudevent, free_port
from tests.functions.streams import events

VOLATILE = {"ce-id", "ce-time"}


MODE = {"structured": False}  # how `post` sends events (run_both sends a script both ways)


def make(monkeypatch: pytest.MonkeyPatch) -> Flask:
    app = learn.create()
    calls = app.config["flask_calls"] = [0]  # requests handed to Flask (none of POST /)
    function_app = app.config["function_app"]
    inner = function_app.flask_app

    def counted(environ: Any, start_response: Any) -> Any:
        calls[0] += 1
        return inner(environ, start_response)

    function_app.flask_app = counted
    return app


def post(app: Flask, ce_type: str, data: Any, path: str = "/", **kwargs: Any) -> Any:
    message = cloudevent(ce_type, data, **kwargs)
    if not MODE["structured"]:
        return app.test_client().post(path, headers=dict(message.headers), data=message.body)
    attributes = {k[3:]: unquote(v) for k, v in message.headers.items() if k.startswith("ce-")}
    envelope = {**attributes, "datacontenttype": "application/json", "data": json.loads(message.body)}
    return app.test_client().post(
        path, data=json.dumps(envelope), headers={"content-type": "application/cloudevents+json"}
    )


def answer(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status_code, [(k, v) for k, v in response.headers if k not in VOLATILE], response.data


def state_of(app: Flask) -> list[tuple[Any, ...]]:
    """What each model learned: position, counts, metric values and its predictions on a probe set (the pickled
    state also holds the Redis commit times, which differ between the two runs)."""
    learner = app.config["learner"]
    out = []
    for rs in learner.replicas.values():
        for r in rs:
            probe = [r.state.predict_one(r.domain.features(e)) for e in events(r.domain.name, 5, seed=99)]
            out.append(
                (
                    r.domain.name,
                    r.model_name,
                    r.state.seq,
                    r.state.events_learned,
                    json.dumps(r.state.metric_values(), default=str, sort_keys=True),
                    probe,
                )
            )
    return out


def run_both(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, script: Callable[[Flask], list[Any]]
) -> tuple[list[Any], list[Any], Flask, Flask]:
    """The same requests on a fresh Redis, once in binary mode and once in structured mode."""
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    fast = make(monkeypatch)
    a = script(fast)
    client.flushall()
    MODE["structured"] = True
    try:
        plain = make(monkeypatch)
        b = script(plain)
    finally:
        MODE["structured"] = False
    return a, b, fast, plain


@pytest.mark.parametrize("domain_name", list(DOMAINS))
def test_binary_and_structured_mode_answer_alike(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, domain_name: str
) -> None:
    domain = DOMAINS[domain_name]
    stream = events(domain_name, 40, seed=9)

    def script(app: Flask) -> list[Any]:
        out = []
        for i, event in enumerate(stream):
            extra: dict[str, Any] = {"partitionkey": str(event.get(domain.key_field)), "domain": domain_name}
            if i % 2:
                extra["time"] = datetime(
                    2026, 11, 28, 12, i % 60, tzinfo=UTC
                )  # as the router delivers the producers' events
            response = post(
                app, domain.type("record"), event, source="/coelho/producers/" + domain_name, ce_id=f"ev-{i}", **extra
            )
            assert response.status_code == 200, response.data
            assert response.headers["ce-time"].endswith("Z") and len(response.headers["ce-id"]) == 36
            out.append(answer(response))
        # duplicates: same source+id, and the same domain event id under another CloudEvent id
        out.append(
            answer(post(app, domain.type("record"), stream[0], source="/coelho/producers/" + domain_name, ce_id="ev-0"))
        )
        out.append(answer(post(app, domain.type("record"), stream[1], ce_id="other")))
        return out

    a, b, fast, plain = run_both(redis_url, monkeypatch, script)
    assert fast.config["flask_calls"] == [0]
    for got, want in zip(a, b, strict=True):
        assert got == want
    if domain.id_field:
        assert json.loads(a[-1][2])["duplicate"] is True
    assert json.loads(a[-2][2])["duplicate"] is True
    assert state_of(fast) == state_of(plain)


def test_labels_and_pause_answer_alike(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tfd = DOMAINS["tfd"]
    stream = events("tfd", 6, seed=12)

    def script(app: Flask) -> list[Any]:
        out = []
        for record in stream[:3]:  # unlabeled records, then their labels
            unlabeled = {k: v for k, v in record.items() if k != tfd.target}
            out.append(answer(post(app, tfd.type("record"), unlabeled)))
        for record in stream[:3]:
            label = {tfd.id_field: record[tfd.id_field], tfd.key_field: record[tfd.key_field], tfd.target: True}
            out.append(answer(post(app, tfd.type("label"), label)))
            out.append(answer(post(app, tfd.type("label"), label)))  # duplicate label
        assert post(app, TRAINING_CONTROL, {"domain": "tfd", "action": "pause"}).status_code == 200
        out += [answer(post(app, tfd.type("record"), r)) for r in stream[3:5]]
        assert post(app, TRAINING_CONTROL, {"domain": "tfd", "action": "resume"}).status_code == 200
        out.append(answer(post(app, tfd.type("record"), stream[5])))
        return out

    a, b, fast, plain = run_both(redis_url, monkeypatch, script)
    assert fast.config["flask_calls"] == [0]
    assert a == b
    replies = [json.loads(body) for _, _, body in a]
    assert [r["kind"] for r in replies[:3]] == ["unlabeled"] * 3
    assert [r["duplicate"] for r in replies[3:9]] == [False, True] * 3
    assert [r["paused"] for r in replies[9:11]] == [True, True]
    assert state_of(fast) == state_of(plain)


def wait_applied(app: Flask, domain_name: str, seq: int, timeout: float = 10.0) -> None:
    replicas = app.config["learner"].replicas[domain_name]
    deadline = time.monotonic() + timeout
    while any(r.state.seq < seq for r in replicas):
        assert time.monotonic() < deadline, [r.state.seq for r in replicas]
        time.sleep(0.01)


def test_reply_none_learns_the_same_and_answers_204(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The learn Triggers' subscriber URI is `/?reply=none` (knative/eventing/triggers.yaml): the same work, a 204
    and no `learned` event to route back into the Broker; errors keep their status and body."""
    tfd = DOMAINS["tfd"]
    stream = events("tfd", 30, seed=21)

    def script(app: Flask) -> list[Any]:
        out = []
        for i, record in enumerate(stream):
            response = post(app, tfd.type("record"), record, path="/?reply=none", ce_id=f"q-{i}")
            out.append(answer(response))
        out.append(answer(post(app, tfd.type("record"), stream[0], path="/?reply=none", ce_id="q-0")))  # duplicate
        out.append(answer(post(app, tfd.type("record"), stream[1], path="/?trace=1&reply=none", ce_id="q-1")))
        bad = dict(stream[1], amount="lots")
        out.append(answer(post(app, tfd.type("record"), bad, path="/?reply=none", ce_id="bad")))
        return out

    def script_then_wait(app: Flask) -> list[Any]:
        out = script(app)
        wait_applied(app, "tfd", len(stream))  # the applier thread learns them after the 204s
        return out

    a, b, fast, plain = run_both(redis_url, monkeypatch, script_then_wait)
    assert fast.config["flask_calls"] == [0]
    assert a == b
    assert all(status == 204 and body == b"" for status, _, body in a[:-1]), a[:3]
    status, _, body = a[-1]
    assert status == 400 and "amount" in json.loads(body)["fields"], body
    learned = {
        r.model_name: r.state.events_learned
        for rs in fast.config["learner"].replicas.values()
        for r in rs
        if r.domain.name == "tfd"
    }
    assert learned and all(n == len(stream) for n in learned.values()), learned
    assert state_of(fast) == state_of(plain)
    # with the reply (`kn func invoke`, `coelho invoke`): the same events give a `learned` CloudEvent
    replied = post(fast, tfd.type("record"), events("tfd", 1, seed=22)[0])
    assert replied.status_code == 200 and replied.headers["ce-type"] == tfd.type("learned")


def test_the_request_is_counted(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = make(monkeypatch)
    ce_type = DOMAINS["tfd"].type("record")
    labels = {"function": "learn", "type": ce_type, "code": "200"}
    before = REGISTRY.get_sample_value("coelho_function_requests_total", labels) or 0.0
    assert post(fast, ce_type, events("tfd", 1, seed=3)[0]).status_code == 200
    assert REGISTRY.get_sample_value("coelho_function_requests_total", labels) == before + 1


def test_errors_and_other_forms_get_the_contract(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tfd = DOMAINS["tfd"]
    event = events("tfd", 1, seed=3)[0]
    headers = dict(cloudevent(tfd.type("record"), event).headers)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("bad field", {"data": json.dumps({**event, "currency": "XXX"})}),
        ("missing field", {"data": json.dumps({"amount": 1})}),
        ("not json", {"data": b"{not json"}),
        ("json list", {"data": b"[1, 2]"}),
        ("json string", {"data": b'"x"'}),
        ("empty", {"data": b""}),
        ("naive time", {"data": json.dumps(event), "headers": {**headers, "ce-time": "2026-11-28T12:00:00"}}),
        ("bad time", {"data": json.dumps(event), "headers": {**headers, "ce-time": "yesterday"}}),
        ("empty id", {"data": json.dumps(event), "headers": {**headers, "ce-id": ""}}),
        ("bad label", {"data": json.dumps({tfd.id_field: "t"}), "headers": {**headers, "ce-type": tfd.type("label")}}),
    ]

    def script(app: Flask) -> list[Any]:
        client = app.test_client()
        out = []
        for _name, kwargs in cases:
            kwargs = {"headers": headers, **kwargs}
            out.append(answer(client.post("/", **kwargs)))
        return out

    a, b, fast, _ = run_both(redis_url, monkeypatch, script)
    assert fast.config["flask_calls"] == [0]
    for (name, _), got, want in zip(cases, a, b, strict=True):
        assert got == want, name
        assert got[0] == 400, name
    assert "currency" in json.loads(a[0][2])["fields"]

    # other forms: structured mode, other extensions, Kafka records, unknown types
    fast = make(monkeypatch)
    structured = {
        "specversion": "1.0",
        "id": "s1",
        "source": "/t",
        "type": tfd.type("record"),
        "datacontenttype": "application/json",
        "data": event,
    }
    response = fast.test_client().post(
        "/", data=json.dumps(structured), headers={"content-type": "application/cloudevents+json"}
    )
    assert response.status_code == 200 and json.loads(response.data)["duplicate"] is False
    assert post(fast, tfd.type("record"), event, someext="x").status_code == 200  # duplicate by transaction id
    kafka = cloudevent(
        "dev.knative.kafka.event",
        dict(event, transaction_id="k1"),
        ce_id="partition:1/offset:2",
        source=f"/apis/v1/namespaces/coelho/kafkasources/records#{tfd.topic}",
    )
    response = fast.test_client().post("/", headers=dict(kafka.headers), data=kafka.body)
    assert response.status_code == 200 and json.loads(response.data)["duplicate"] is False
    assert post(fast, "boson.fn", {"message": "Hello World"}).status_code == 400


def test_error_after_the_commit_is_a_500_in_both_modes(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tfd = DOMAINS["tfd"]
    event = events("tfd", 1, seed=4)[0]

    def script(app: Flask) -> list[Any]:
        for replica in app.config["learner"].replicas["tfd"]:
            monkeypatch.setattr(replica, "learn_committed", lambda *_a: (_ for _ in ()).throw(RuntimeError("boom")))
        return [answer(post(app, tfd.type("record"), event, ce_id="e1"))]

    a, b, fast, _ = run_both(redis_url, monkeypatch, script)
    assert fast.config["flask_calls"] == [0]
    assert a == b and a[0][0] == 500 and b"boom" in a[0][2]


def test_redis_unreachable_is_503(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    answers = []
    for structured in (False, True):
        MODE["structured"] = structured
        try:
            response = post(make(monkeypatch), DOMAINS["tfd"].type("record"), events("tfd", 1)[0])
        finally:
            MODE["structured"] = False
        assert response.status_code == 503 and "retry" in json.loads(response.data)["error"]
        answers.append(answer(response))
    assert answers[0] == answers[1]


def test_the_applier_thread_ends_when_idle_and_a_later_poke_starts_it(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`?reply=none` deliveries are applied by the domain's applier thread; it ends after a quiet spell (no thread
    is left behind) and the next delivery starts it again, with nothing skipped in between."""
    redis.Redis.from_url(redis_url).flushall()
    app = make(monkeypatch)
    learner = app.config["learner"]
    tfd = DOMAINS["tfd"]
    applier = learner.batch_learners["tfd"] = BatchLearner(
        "tfd", learner.replicas["tfd"], idle_s=0.05, exit_after_s=0.3
    )
    stream = events("tfd", 12, seed=31)
    for i, record in enumerate(stream[:6]):
        assert post(app, tfd.type("record"), record, path="/?reply=none", ce_id=f"a-{i}").status_code == 204
    wait_applied(app, "tfd", 6)
    deadline = time.monotonic() + 5
    while applier.running:
        assert time.monotonic() < deadline, "the applier thread did not end when idle"
        time.sleep(0.05)
    first = applier.thread
    assert first is not None
    first.join(2)
    assert not first.is_alive()
    for i, record in enumerate(stream[6:], start=6):
        assert post(app, tfd.type("record"), record, path="/?reply=none", ce_id=f"a-{i}").status_code == 204
    wait_applied(app, "tfd", 12)
    assert applier.thread is not first
    assert all(r.state.events_learned == 12 for r in learner.replicas["tfd"])


def test_the_applier_retries_until_the_log_is_applied_and_only_then_ends() -> None:
    """Redis away while entries wait in the log: the applier retries (backing off), never ends before an attempt
    succeeds, then ends once idle."""

    class FlakyReplica:
        def __init__(self, failures: int) -> None:
            self.failures, self.calls, self.applied = failures, 0, False

        def catch_up(self, batch: int = 0) -> list[Any]:
            self.calls += 1
            if self.calls <= self.failures:
                raise redis.ConnectionError("Redis is away")
            self.applied = True
            return []

    replica = FlakyReplica(failures=4)
    applier = BatchLearner("tfd", [replica], idle_s=0.02, exit_after_s=0.0)  # type: ignore[list-item]
    applier.poke()
    deadline = time.monotonic() + 10
    while not replica.applied:
        assert time.monotonic() < deadline, f"not applied after {replica.calls} attempts"
        assert applier.running, "the applier ended with entries unapplied"
        time.sleep(0.01)
    thread = applier.thread
    assert thread is not None
    thread.join(5)  # the attempt that succeeded clears the error just after `applied` flips: read it once ended
    assert not thread.is_alive() and not applier.running
    assert replica.calls == 5 and applier.error is None
