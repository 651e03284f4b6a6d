"""learn-one's handler over HTTP (Flask test client) against a throwaway Redis: kinds, labels, Kafka, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from eventing.domains import get_domain
from functions import learn
from tests.functions.function_testkit import cloudevent, free_port
from tests.functions.streams import events

RECORD_TIME = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def post(client: Any, message: Any) -> Any:
    return client.post("/", data=message.body, headers=dict(message.headers))


@pytest.fixture()
def app(redis_url: str) -> Any:
    return learn.create()


def test_delayed_label_is_learned_when_it_arrives(app: Any) -> None:
    tfd = get_domain("tfd")
    client = app.test_client()
    record = events("tfd", 1, seed=12)[0]
    unlabeled = {k: v for k, v in record.items() if k != "is_fraud"}
    reply = json.loads(post(client, cloudevent(tfd.type("record"), unlabeled)).data)
    assert reply["kind"] == "unlabeled" and reply["models"][0]["learned"] is False
    label = {"transaction_id": record["transaction_id"], "user_id": record["user_id"], "is_fraud": True}
    response = post(client, cloudevent(tfd.type("label"), label))
    assert response.headers["ce-type"] == tfd.type("learned")
    reply = json.loads(response.data)
    assert reply["kind"] == "label" and reply["models"][0]["learned"] is True
    assert reply["models"][0]["events_learned"] == 1
    assert json.loads(post(client, cloudevent(tfd.type("label"), label)).data)["duplicate"] is True


def test_kafka_event_takes_its_domain_from_the_topic(app: Any) -> None:
    eta = get_domain("eta")
    client = app.test_client()
    trip = events("eta", 1, seed=13)[0]
    message = cloudevent(
        "dev.knative.kafka.event",
        trip,
        ce_id="partition:2/offset:17",
        source=f"/apis/v1/namespaces/coelho/kafkasources/records#{eta.topic}",
        time=RECORD_TIME,  # the Kafka record's timestamp: the same on every redelivery
    )
    reply = json.loads(post(client, message).data)
    assert reply["domain"] == "eta" and reply["models"][0]["learned"] is True
    again = cloudevent(
        "dev.knative.kafka.event",
        dict(trip, trip_id="other"),
        ce_id="x",
        source=f"/apis/v1/namespaces/coelho/kafkasources/records#{eta.topic}",
        knativekafkapartition="2",
        knativekafkaoffset="17",
        time=RECORD_TIME,
    )
    assert json.loads(post(client, again).data)["duplicate"] is True  # same partition, offset and record
    unknown = cloudevent("dev.knative.kafka.event", trip, source="/apis/v1/namespaces/coelho/kafkasources/x#nope")
    response = post(client, unknown)
    assert response.status_code == 400 and "nope" in response.json["error"]


def test_errors(app: Any) -> None:
    client = app.test_client()
    tfd = get_domain("tfd")
    response = post(client, cloudevent("boson.fn", {"message": "Hello World"}))
    assert response.status_code == 400 and tfd.type("label") in response.json["accepted_types"]
    response = post(client, cloudevent(tfd.type("record"), dict(events("tfd", 1)[0], currency="XXX")))
    assert response.status_code == 400 and "currency" in response.json["fields"]
    response = post(client, cloudevent(tfd.type("label"), {"transaction_id": "t"}))
    assert response.status_code == 400 and "is_fraud" in response.json["fields"]
    structured = client.post("/", data=b"{not json", headers={"content-type": "application/cloudevents+json"})
    assert structured.status_code == 400 and "not a valid CloudEvent" in structured.json["error"]


def test_redis_unreachable_is_503(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    client = learn.create().test_client()
    response = post(client, cloudevent(get_domain("tfd").type("record"), events("tfd", 1)[0]))
    assert response.status_code == 503 and "retry" in response.json["error"]
    assert client.get("/health/readiness").status_code == 503
    assert client.get("/health/liveness").status_code == 200
