"""The local router does what Knative Eventing with the Kafka Broker does, against the real Kafka-protocol broker.

One router (in this process) runs the manifests below; each test uses its own event types and its own subscriber.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from coelho.settings import Settings
from eventing.router.router import Router
from eventing.router.testing import Received, RecordingSubscriber, always, ce_headers, read_topic, unique_namespace
from tests.eventing.router import harness
from tests.eventing.router.harness import Doc, post, running_router, send
from tests.prometheus_text import family_names, sample_names, sample_value

pytestmark = pytest.mark.stack

NS = unique_namespace("rt")
SOURCE_TOPIC = f"{NS}-source"
DEAD_TOPIC = f"{NS}-dead-letters"

SUBSCRIBERS = [
    "convert",
    "passthrough",
    "ingress",
    "exact",
    "prefix",
    "suffix",
    "all",
    "any",
    "not",
    "attributes",
    "retry",
    "dead",
    "exhausted",
    "ordered",
    "parallel",
    "reply",
    "replied",
]


def trigger(name: str, ordered: bool = False, delivery: dict[str, Any] | None = None, **filtering: Any) -> Doc:
    return harness.trigger(NS, name, f"sub-{name}", ordered=ordered, delivery=delivery, **filtering)


def attrs(**pairs: str) -> dict[str, Any]:
    return {"attributes": pairs}


FILTERS: dict[str, list[Doc]] = {
    "exact": [{"exact": {"type": "test.filter.a"}}],
    "prefix": [{"prefix": {"type": "test.filter."}}],
    "suffix": [{"suffix": {"source": "/suffix-me"}}],
    "all": [{"all": [{"exact": {"type": "test.filter.a"}}, {"exact": {"subject": "filter-s1"}}]}],
    "any": [{"any": [{"exact": {"subject": "filter-s1"}}, {"exact": {"subject": "filter-s2"}}]}],
    "not": [{"prefix": {"type": "test.filter."}}, {"not": {"exact": {"subject": "filter-s1"}}}],
}
TRIGGERS = [
    trigger("convert", **attrs(type="dev.knative.kafka.event")),
    trigger("passthrough", **attrs(type="test.passthrough")),
    trigger("ingress", **attrs(type="test.ingress")),
    *[trigger(name, filters=filters) for name, filters in FILTERS.items()],
    trigger("attributes", **attrs(type="test.filter.a", subject="filter-s2")),
    trigger("retry", **attrs(type="test.retry")),
    trigger("dead", **attrs(type="test.dead")),
    trigger(
        "exhausted",
        delivery={"retry": 2, "backoffPolicy": "exponential", "backoffDelay": "PT0.01S"},
        **attrs(type="test.exhausted"),
    ),
    trigger("ordered", ordered=True, **attrs(type="test.ordered")),
    trigger("parallel", **attrs(type="test.parallel")),
    trigger("reply", **attrs(type="test.reply.request")),
    trigger("replied", **attrs(type="test.reply.response")),
]
MANIFESTS = [
    harness.broker(
        NS,
        harness.dead_letters("dead-letters", retry=3, backoffPolicy="linear", backoffDelay="PT0.05S"),
        kafka_class=True,
    ),
    harness.kafka_sink(NS, "dead-letters", DEAD_TOPIC),
    harness.kafka_source(NS, "src", SOURCE_TOPIC),
    *TRIGGERS,
]


class FailFirst:
    """500 on the first delivery of each event id, 200 afterwards."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, got: Received) -> tuple[int, dict[str, str], bytes]:
        ce_id = got.headers["ce-id"]
        if ce_id in self.seen:
            return 200, {}, b""
        self.seen.add(ce_id)
        return 500, {}, b"temporary failure"


def answer_with_reply(got: Received) -> tuple[int, dict[str, str], bytes]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "reply-" + got.headers["ce-id"],
        "ce-source": "/tests/replier",
        "ce-type": "test.reply.response",
        "Content-Type": "application/json",
    }
    return 200, headers, json.dumps({"answer": 42}).encode()


@pytest.fixture(scope="module")
def subscribers() -> Iterator[dict[str, RecordingSubscriber]]:
    subs = {name: RecordingSubscriber() for name in SUBSCRIBERS}
    subs["retry"].responder = FailFirst()
    subs["dead"].responder = lambda _g: (400, {}, b"amount: must be >= 0.01")
    subs["exhausted"].responder = always(503)
    subs["ordered"].delay = 0.02
    subs["parallel"].delay = 0.1
    subs["reply"].responder = answer_with_reply
    yield subs
    for sub in subs.values():
        sub.stop()


@pytest.fixture(scope="module")
def router(
    kafka_settings: Settings, subscribers: dict[str, RecordingSubscriber], tmp_path_factory: Any
) -> Iterator[Router]:
    urls = {f"sub-{name}": sub.url for name, sub in subscribers.items()}
    with running_router(kafka_settings, NS, MANIFESTS, tmp_path_factory.mktemp("router"), urls) as r:
        yield r


# --- KafkaSource ------------------------------------------------------------------------------------------
def test_kafka_source_converts_a_plain_record_as_knative_does(
    router: Router, subscribers: Any, kafka_producer: Any
) -> None:
    future = kafka_producer.send(
        SOURCE_TOPIC,
        key=b"user-7",
        value=b'{"amount": 12.5}',
        timestamp_ms=1767225600123,
        headers=[("X-Trace-Id", b"abc123"), ("content-type", b"application/json")],
    )
    meta = future.get(timeout=10)
    got = subscribers["convert"].wait_for(1)
    assert got, "the converted record never arrived"
    h = got[0].headers
    assert h["ce-specversion"] == "1.0"
    assert h["ce-type"] == "dev.knative.kafka.event"
    assert h["ce-id"] == f"partition:{meta.partition}/offset:{meta.offset}"
    assert h["ce-source"] == f"/apis/v1/namespaces/{NS}/kafkasources/src#{SOURCE_TOPIC}"
    assert h["ce-subject"] == f"partition:{meta.partition}#{meta.offset}"
    assert h["ce-time"] == "2026-01-01T00:00:00.123Z"
    assert h["ce-key"] == "user-7" and h["ce-partitionkey"] == "user-7"
    assert h["ce-kafkaheaderxtraceid"] == "abc123"
    assert h["ce-knativekafkapartition"] == str(meta.partition)
    assert h["ce-knativekafkaoffset"] == str(meta.offset)
    assert h["content-type"] == "application/json"
    assert json.loads(got[0].body) == {"amount": 12.5}


def test_kafka_source_passes_a_cloudevent_record_through_unchanged(
    router: Router, subscribers: Any, kafka_producer: Any
) -> None:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"tx-1"),
        ("ce_source", b"/coelho/producers/tfd"),
        ("ce_type", b"test.passthrough"),
        ("ce_time", b"2026-01-01T10:00:00Z"),
        ("ce_domain", b"tfd"),
        ("ce_partitionkey", b"user-1"),
        ("content-type", b"application/json"),
    ]
    kafka_producer.send(SOURCE_TOPIC, key=b"user-1", value=b'{"amount": 3.0}', headers=headers).get(timeout=10)
    got = subscribers["passthrough"].wait_for(1)
    assert got
    h = got[0].headers
    assert (h["ce-id"], h["ce-source"], h["ce-type"], h["ce-time"]) == (
        "tx-1",
        "/coelho/producers/tfd",
        "test.passthrough",
        "2026-01-01T10:00:00Z",
    )
    assert h["ce-domain"] == "tfd" and h["ce-partitionkey"] == "user-1"
    assert not any(k.startswith("ce-kafkaheader") or k == "ce-knativekafkaoffset" for k in h)
    assert got[0].body == b'{"amount": 3.0}'


# --- Broker ingress ---------------------------------------------------------------------------------------
def test_ingress_accepts_binary_mode_with_202_and_delivers_in_binary_mode(router: Router, subscribers: Any) -> None:
    resp = post(router, ce_headers("test.ingress", "bin-1", domain="tfd"), b'{"x": 1}')
    assert resp.status_code == 202
    got = subscribers["ingress"].wait_for(1)
    assert got[0].headers["ce-id"] == "bin-1" and got[0].headers["ce-domain"] == "tfd"
    assert got[0].headers["content-type"] == "application/json"
    assert json.loads(got[0].body) == {"x": 1}


def test_ingress_accepts_structured_mode_on_the_namespaced_path(router: Router, subscribers: Any) -> None:
    event = {
        "specversion": "1.0",
        "id": "struct-1",
        "source": "/tests",
        "type": "test.ingress",
        "datacontenttype": "application/json",
        "data": {"y": 2},
    }
    resp = post(router, {"content-type": "application/cloudevents+json"}, json.dumps(event).encode(), f"/{NS}/default")
    assert resp.status_code == 202
    got = [g for g in subscribers["ingress"].wait_for(2) if g.headers["ce-id"] == "struct-1"]
    assert got, "structured event not delivered"
    assert "ce-type" in got[0].headers  # delivered in binary mode
    assert json.loads(got[0].body) == {"y": 2}


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_ingress_takes_the_curl_request_from_knatives_documentation(router: Router, subscribers: Any) -> None:
    out = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            router.settings.broker_url + f"/{NS}/default",
            "-H",
            "Ce-Id: say-hello",
            "-H",
            "Ce-Specversion: 1.0",
            "-H",
            "Ce-Type: test.ingress",
            "-H",
            "Ce-Source: mycurl",
            "-H",
            "Content-Type: application/json",
            "-d",
            '{"msg":"Hello Knative!"}',
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.stdout == "202"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "say-hello" not in subscribers["ingress"].ids():
        time.sleep(0.05)
    assert "say-hello" in subscribers["ingress"].ids()


@pytest.mark.parametrize(
    "headers,body,reason",
    [
        ({"ce-specversion": "1.0", "ce-source": "/x", "ce-type": "t"}, b"{}", "id"),
        ({"ce-specversion": "1.0", "ce-id": "1", "ce-type": "t"}, b"{}", "source"),
        ({"ce-specversion": "0.9", "ce-id": "1", "ce-source": "/x", "ce-type": "t"}, b"{}", "specversion"),
        ({"content-type": "application/json"}, b'{"plain": "json"}', "ce-"),
        ({"content-type": "application/cloudevents+json"}, b'{"specversion": "1.0", "id": "1"}', "source"),
    ],
    ids=["no-id", "no-source", "bad-specversion", "not-a-cloudevent", "structured-missing"],
)
def test_ingress_answers_400_with_the_reason(router: Router, headers: dict[str, str], body: bytes, reason: str) -> None:
    resp = post(router, headers, body)
    assert resp.status_code == 400
    assert reason in resp.text


def test_ingress_answers_404_for_an_unknown_broker(router: Router) -> None:
    assert post(router, ce_headers("test.ingress", "x"), b"{}", f"/{NS}/nope").status_code == 404


def test_readiness_on_the_ingress(router: Router) -> None:
    assert requests.get(router.settings.broker_url + "/health/readiness", timeout=5).status_code == 200


# --- Trigger filters --------------------------------------------------------------------------------------
FILTER_EVENTS = {
    "f1": {"type": "test.filter.a", "subject": "filter-s1", "source": "/x"},
    "f2": {"type": "test.filter.a", "subject": "filter-s2", "source": "/suffix-me"},
    "f3": {"type": "test.filter.b", "subject": "filter-s3", "source": "/y"},
    "f4": {"type": "other.filter", "subject": "filter-s1", "source": "/z"},
}
EXPECTED = {
    "exact": {"f1", "f2"},
    "prefix": {"f1", "f2", "f3"},
    "suffix": {"f2"},
    "all": {"f1"},
    "any": {"f1", "f2", "f4"},
    "not": {"f2", "f3"},
    "attributes": {"f2"},
}


@pytest.fixture(scope="module")
def filtered(router: Router, subscribers: Any) -> dict[str, set[str]]:
    for ce_id, a in FILTER_EVENTS.items():
        headers = {
            "ce-specversion": "1.0",
            "ce-id": ce_id,
            "ce-source": a["source"],
            "ce-type": a["type"],
            "ce-subject": a["subject"],
            "content-type": "application/json",
        }
        assert post(router, headers, b"{}").status_code == 202
    for name, ids in EXPECTED.items():
        subscribers[name].wait_for(len(ids), timeout=20)
    time.sleep(1.0)  # events that should not arrive get the time to (wrongly) arrive
    return {name: set(subscribers[name].ids()) for name in EXPECTED}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_filter(filtered: dict[str, set[str]], kind: str) -> None:
    assert filtered[kind] == EXPECTED[kind]


# --- delivery: retries, dead letters ----------------------------------------------------------------------
def test_a_500_is_retried_and_the_event_delivered_once(router: Router, subscribers: Any) -> None:
    send(router, "test.retry", "retry-1")
    got = subscribers["retry"].wait_for(2)
    time.sleep(0.5)
    ids = subscribers["retry"].ids()
    assert ids == ["retry-1", "retry-1"], "one failed attempt, then one successful delivery"
    registry = router.metrics.registry
    assert registry.get_sample_value("coelho_router_retries_total", {"trigger": "retry"}) == 1
    assert registry.get_sample_value("coelho_router_events_out_total", {"trigger": "retry"}) == 1
    assert len(got) == 2


def test_a_400_is_dead_lettered_at_once_with_the_reason(router: Router, subscribers: Any) -> None:
    send(router, "test.dead", "dead-1", {"amount": -5})
    records = read_topic(router.bootstrap, DEAD_TOPIC, 1, match=lambda r: dict(r.headers).get("ce_id") == b"dead-1")
    assert records, "nothing in the dead-letter topic"
    headers = {k: v.decode() for k, v in records[0].headers}
    assert subscribers["dead"].ids() == ["dead-1"], "a 400 is not retried"
    assert headers["ce_type"] == "test.dead"
    assert headers["ce_knativeerrorcode"] == "400"
    assert headers["ce_knativeerrordest"] == subscribers["dead"].url
    assert base64.b64decode(headers["ce_knativeerrordata"]) == b"amount: must be >= 0.01"
    assert json.loads(records[0].value) == {"amount": -5}


def test_a_503_is_retried_as_specified_then_dead_lettered(router: Router, subscribers: Any) -> None:
    send(router, "test.exhausted", "exh-1")
    records = read_topic(router.bootstrap, DEAD_TOPIC, 1, match=lambda r: dict(r.headers).get("ce_id") == b"exh-1")
    assert records
    assert dict(records[0].headers)["ce_knativeerrorcode"] == b"503"
    assert subscribers["exhausted"].ids() == ["exh-1"] * 3, "1 attempt + retry: 2"


# --- ordering ---------------------------------------------------------------------------------------------
def test_ordered_trigger_delivers_one_event_per_key_at_a_time_in_order(router: Router, subscribers: Any) -> None:
    keys = ["k1", "k2", "k3"]
    for i in range(12):
        for key in keys:
            send(router, "test.ordered", f"{key}-{i:02d}", partitionkey=key)
    got = subscribers["ordered"].wait_for(36, timeout=60)
    assert len(got) == 36
    for key in keys:
        seen = [g.headers["ce-id"] for g in got if g.headers["ce-partitionkey"] == key]
        assert seen == sorted(seen), f"{key} out of order: {seen}"
    assert subscribers["ordered"].max_active_per_key == 1


def test_parallel_trigger_has_several_deliveries_in_flight(router: Router, subscribers: Any) -> None:
    for i in range(20):
        send(router, "test.parallel", f"par-{i}", partitionkey="same-key")
    assert len(subscribers["parallel"].wait_for(20, timeout=30)) == 20
    assert subscribers["parallel"].max_active > 1


# --- replies ----------------------------------------------------------------------------------------------
def test_a_reply_event_goes_back_into_the_broker(router: Router, subscribers: Any) -> None:
    send(router, "test.reply.request", "ask-1")
    got = subscribers["replied"].wait_for(1)
    assert got and got[0].headers["ce-id"] == "reply-ask-1"
    assert json.loads(got[0].body) == {"answer": 42}


# --- metrics ----------------------------------------------------------------------------------------------
def test_metrics_count_events_per_source_and_trigger(router: Router, subscribers: Any) -> None:
    send(router, "test.ingress", "metric-1")
    subscribers["ingress"].wait_for(1)
    time.sleep(0.5)
    with urllib.request.urlopen(f"http://127.0.0.1:{router.settings.ports['router_metrics']}/metrics") as resp:
        text = resp.read().decode()
    assert (sample_value(text, "coelho_router_events_in_total", source="ingress") or 0) >= 1
    assert (sample_value(text, "coelho_router_events_out_total", trigger="ingress") or 0) >= 1
    assert "coelho_router_delivery_latency_seconds_bucket" in sample_names(text)
    assert {"coelho_router_consumer_lag", "coelho_router_dead_lettered"} <= family_names(text)  # samples or not
