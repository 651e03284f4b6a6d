"""PingSource end to end: `python -m eventing.router` runs a PingSource on its real schedule against the real
Kafka-protocol broker, and its CloudEvent reaches the subscriber with Knative's PingSource attributes and data —
through the Broker and a Trigger (`data`), and straight to a Service sink (`dataBase64`). Also: the real knative/ checkpoint PingSource
routes to the checkpoint function (checked with the router's own loader and filter, without waiting 5 minutes)."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from coelho.settings import PROJECT_ROOT, Settings
from eventing.router.cron import CronSchedule
from eventing.router.filters import compile_filter
from eventing.router.manifests import ManifestError, Manifests
from eventing.router.sources import ping_event
from eventing.router.testing import Received, RecordingSubscriber, RouterProcess, unique_namespace
from tests.eventing.router import harness

NS = unique_namespace("ping")
TO_BROKER = "every-minute"
TO_SERVICE = "every-minute-direct"
BROKER_DATA = {"reason": "schedule", "n": 1, "nested": {"ok": True}}
SERVICE_DATA = {"to": "service"}
PING_TYPE = "dev.knative.sources.ping"


def ping_source(name: str, sink: dict[str, Any], **spec: str) -> dict[str, Any]:
    return {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "PingSource",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"schedule": "* * * * *", **spec, "sink": sink},
    }


MANIFESTS = [
    harness.broker(NS, {"retry": 3, "backoffPolicy": "linear", "backoffDelay": "PT0.1S"}, kafka_class=True),
    ping_source(TO_BROKER, harness.to_broker(), contentType="application/json", data=json.dumps(BROKER_DATA)),
    ping_source(
        TO_SERVICE,
        harness.to_service("ping-direct"),
        timezone="Etc/UTC",
        contentType="application/json",
        dataBase64=base64.b64encode(json.dumps(SERVICE_DATA).encode()).decode(),
    ),
    harness.trigger(
        NS,
        "pings",
        "coelho-learn",
        filters=[
            {
                "all": [
                    {"exact": {"type": PING_TYPE}},
                    {"exact": {"source": f"/apis/v1/namespaces/{NS}/pingsources/{TO_BROKER}"}},
                ]
            }
        ],
    ),
]


@pytest.fixture
def via_broker() -> Iterator[RecordingSubscriber]:
    sub = RecordingSubscriber()
    yield sub
    sub.stop()


@pytest.fixture
def direct() -> Iterator[RecordingSubscriber]:
    sub = RecordingSubscriber()
    yield sub
    sub.stop()


@pytest.fixture
def router_process(
    kafka_settings: Settings, via_broker: RecordingSubscriber, direct: RecordingSubscriber, tmp_path: Path
) -> Iterator[RouterProcess]:
    proc = harness.router_process(kafka_settings, NS, MANIFESTS, tmp_path, via_broker.url)
    proc.argv += ["--subscriber", f"ping-direct={direct.url}"]
    yield proc
    proc.stop()


def _assert_is_a_ping(got: Received, name: str, data: Mapping[str, object], started: float) -> None:
    h = got.headers
    assert h.get("ce-specversion") == "1.0"
    assert h.get("ce-type") == PING_TYPE
    assert h.get("ce-source") == f"/apis/v1/namespaces/{NS}/pingsources/{name}"
    assert h.get("ce-id"), "a ping has an id"
    assert h.get("content-type", "").startswith("application/json")
    assert json.loads(got.body) == data
    # `time` is the scheduled instant: a whole minute, after the router started and before it arrived.
    when = datetime.strptime(h["ce-time"], "%Y-%m-%dT%H:%M:%S.%f%z")
    assert (when.second, when.microsecond) == (0, 0), h["ce-time"]
    assert started - 1 <= when.timestamp() <= got.at + 1, (h["ce-time"], started, got.at)


@pytest.mark.stack
@pytest.mark.timeout(240)
def test_pingsource_every_minute_reaches_subscribers_through_the_broker_and_directly(
    router_process: RouterProcess, via_broker: RecordingSubscriber, direct: RecordingSubscriber
) -> None:
    started = time.time()
    router_process.start()
    # "* * * * *" fires at the next whole minute: at most 60 s after start (plus delivery).
    deadline = time.monotonic() + 70
    while time.monotonic() < deadline and not (via_broker.received and direct.received):
        assert router_process.proc is not None and router_process.proc.poll() is None, "router exited"
        time.sleep(0.2)
    assert via_broker.received, "no ping reached the Trigger's subscriber through the Broker within 70 s"
    assert direct.received, "no ping reached the PingSource's Service sink within 70 s"
    _assert_is_a_ping(via_broker.received[0], TO_BROKER, BROKER_DATA, started)
    _assert_is_a_ping(direct.received[0], TO_SERVICE, SERVICE_DATA, started)
    # The Trigger takes only its PingSource: the direct one never went through the Broker to it.
    assert {r.headers["ce-source"] for r in via_broker.received} == {
        f"/apis/v1/namespaces/{NS}/pingsources/{TO_BROKER}"
    }
    # Both fired for the same scheduled minute, each once for it.
    assert via_broker.received[0].headers["ce-time"] == direct.received[0].headers["ce-time"]
    assert len({r.headers["ce-time"] for r in via_broker.received}) == len(via_broker.received)


# --- the real knative/ checkpoint PingSource ---------------------------------------------------------------
def test_the_real_checkpoint_pingsource_routes_to_the_checkpoint_function() -> None:
    m = Manifests.load(PROJECT_ROOT / "knative")
    source = m.ping_sources[("coelho", "coelho-checkpoint-schedule")]
    assert source.schedule == "*/5 * * * *" and source.timezone == "Etc/UTC"
    schedule = CronSchedule(source.schedule)
    assert schedule.next_after(datetime(2026, 1, 1, 10, 0, 1)) == datetime(2026, 1, 1, 10, 5)
    assert json.loads(source.data) == {"reason": "schedule"}
    assert source.sink.kind == "Broker" and (source.sink.namespace, source.sink.name) in m.brokers

    event = ping_event(source, datetime(2026, 1, 1, 10, 5, tzinfo=UTC))
    matching = [
        t
        for t in m.triggers.values()
        if (t.namespace, t.broker) == (source.sink.namespace, source.sink.name)
        and compile_filter(t.filter_attributes, t.filters)(event.attributes)
    ]
    assert [(t.name, t.subscriber.kind, t.subscriber.name) for t in matching] == [
        ("checkpoint-requested", "Service", "coelho-checkpoint")
    ]
    service = m.services[("coelho", "coelho-checkpoint")]
    assert service["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "functions.checkpoint"
    # ... and the checkpoint function takes the ping (not a 400 into the dead letters), for every domain.
    from eventing.domains import DOMAINS
    from functions.checkpoint import ACCEPTED, requested_domains

    assert event.attributes["type"] in ACCEPTED
    assert requested_domains(None) == list(DOMAINS)
    # The filter is specific to this PingSource: another PingSource's pings do not ask for checkpoints.
    other = ping_event(dataclasses.replace(source, name="someone-else"), datetime(2026, 1, 1, 10, 5, tzinfo=UTC))
    assert not any(compile_filter(t.filter_attributes, t.filters)(other.attributes) for t in matching)


def test_a_pingsource_with_database64_sends_the_decoded_bytes() -> None:
    """Knative's PingSource takes its body from `data` or, base64-encoded, from `dataBase64` (mutually exclusive)."""
    body = b"\x00\x01binary\xff"
    doc: dict[str, Any] = {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "PingSource",
        "metadata": {"name": "b64", "namespace": NS},
        "spec": {
            "schedule": "* * * * *",
            "contentType": "application/octet-stream",
            "dataBase64": base64.b64encode(body).decode(),
            "sink": {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "x"}},
        },
    }
    source = Manifests.from_documents([doc]).ping_sources[(NS, "b64")]
    event = ping_event(source, datetime(2026, 1, 1, 10, 5, tzinfo=UTC))
    assert event.data == body
    assert event.attributes["datacontenttype"] == "application/octet-stream"
    both = {**doc, "spec": {**doc["spec"], "data": "{}"}}
    with pytest.raises(ManifestError, match="dataBase64"):
        Manifests.from_documents([both])
