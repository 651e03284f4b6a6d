"""What the router tests against the real Kafka-protocol broker share: Knative manifests built as documents, a
router started on them (in this process, or as `python -m eventing.router`), and CloudEvents posted to its Broker
ingress. The deliveries are collected by `eventing.router.testing.RecordingSubscriber`s.

Every document lives in the test's own namespace, so its Broker topic and consumer groups are its own.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import requests
import yaml

from coelho.settings import Settings
from eventing.router.router import Router
from eventing.router.testing import RouterProcess, ce_headers, router_settings

Doc = dict[str, Any]
ORDERED = {"kafka.eventing.knative.dev/delivery.order": "ordered"}


def ref(api_version: str, kind: str, name: str) -> Doc:
    return {"ref": {"apiVersion": api_version, "kind": kind, "name": name}}


def to_broker() -> Doc:
    return ref("eventing.knative.dev/v1", "Broker", "default")


def to_service(name: str) -> Doc:
    return ref("serving.knative.dev/v1", "Service", name)


def dead_letters(sink: str, **delivery: Any) -> Doc:
    """A delivery spec whose dead-letter sink is the KafkaSink `sink`."""
    return {**delivery, "deadLetterSink": ref("eventing.knative.dev/v1alpha1", "KafkaSink", sink)}


def broker(ns: str, delivery: Doc, kafka_class: bool = False) -> Doc:
    """The Broker `default` of `ns`."""
    metadata: Doc = {"name": "default", "namespace": ns}
    if kafka_class:
        metadata["annotations"] = {"eventing.knative.dev/broker.class": "Kafka"}
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": metadata,
        "spec": {"delivery": delivery},
    }


def kafka_sink(ns: str, name: str, topic: str) -> Doc:
    return {
        "apiVersion": "eventing.knative.dev/v1alpha1",
        "kind": "KafkaSink",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"topic": topic, "bootstrapServers": ["unused-locally"]},
    }


def kafka_source(ns: str, name: str, topic: str, delivery: Doc | None = None) -> Doc:
    """A KafkaSource of `topic` into the Broker, from the earliest offset, consumer group `<ns>-<name>`."""
    spec: Doc = {
        "bootstrapServers": ["unused-locally"],
        "topics": [topic],
        "consumerGroup": f"{ns}-{name}",
        "initialOffset": "earliest",
    }
    if delivery is not None:
        spec["delivery"] = delivery
    spec["sink"] = to_broker()
    return {
        "apiVersion": "sources.knative.dev/v1beta1",
        "kind": "KafkaSource",
        "metadata": _meta(ns, name),
        "spec": spec,
    }


def trigger(
    ns: str,
    name: str,
    service: str,
    attributes: Mapping[str, str] | None = None,
    filters: list[Doc] | None = None,
    ordered: bool = False,
    delivery: Doc | None = None,
) -> Doc:
    """A Trigger on the Broker delivering to the Service `service`: `attributes` is its `filter`, `filters` the
    newer dialect."""
    metadata = _meta(ns, name)
    if ordered:
        metadata["annotations"] = dict(ORDERED)
    spec: Doc = {"broker": "default"}
    if attributes is not None:
        spec["filter"] = {"attributes": dict(attributes)}
    if filters is not None:
        spec["filters"] = filters
    spec["subscriber"] = to_service(service)
    if delivery is not None:
        spec["delivery"] = delivery
    return {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": metadata, "spec": spec}


def _meta(ns: str, name: str) -> Doc:
    return {"name": name, "namespace": ns}


def write_manifests(directory: Path, docs: list[Doc]) -> Path:
    """`docs` as one YAML file in `directory` (created), the router's manifests directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "test.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return directory


@contextlib.contextmanager
def running_router(
    kafka: Settings, ns: str, docs: list[Doc], directory: Path, subscribers: Mapping[str, str]
) -> Iterator[Router]:
    """A Router in this process on `docs` (namespace `ns`, `kafka`'s broker, ports of its own), its Services served
    by `subscribers` (name to URL): once its consumers have their partitions; stopped on exit."""
    settings = router_settings(kafka, ns, directory / "data")
    router = Router(settings, manifests_dir=write_manifests(directory / "manifests", docs), subscribers=subscribers)
    router.start()
    try:
        assert router.wait_ready(90), "router consumers did not get their partitions"
        yield router
    finally:
        router.stop()


def router_process(kafka: Settings, ns: str, docs: list[Doc], directory: Path, subscriber_url: str) -> RouterProcess:
    """`python -m eventing.router` on `docs` (not started yet): every Service it delivers to is `subscriber_url`."""
    settings = router_settings(kafka, ns, directory / "data")
    return RouterProcess(settings, write_manifests(directory / "manifests", docs), subscriber_url)


class Routing(Protocol):
    """A router, in this process or not."""

    settings: Settings


def post(router: Routing, headers: Mapping[str, str], body: bytes, path: str = "/") -> requests.Response:
    """A request to the router's Broker ingress."""
    return requests.post(router.settings.broker_url + path, headers=dict(headers), data=body, timeout=15)


def send(router: Routing, ce_type: str, ce_id: str, data: Any = None, **extensions: str) -> None:
    """A binary-mode JSON CloudEvent into the router's Broker, accepted (202)."""
    resp = post(router, ce_headers(ce_type, ce_id, **extensions), json.dumps(data or {"n": ce_id}).encode())
    assert resp.status_code == 202, resp.text
