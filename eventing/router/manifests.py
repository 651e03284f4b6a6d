"""The Knative manifests in knative/, read as the routing table of the local router.

Only the kinds the router executes are interpreted (Broker, Trigger, KafkaSource, PingSource, KafkaSink, JobSink,
Knative Service, ConfigMap); every other document (Deployments, Strimzi resources, Helm values, kustomizations) is skipped.

>>> m = Manifests.from_documents([{"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
...     "metadata": {"name": "default", "namespace": "coelho"}}])
>>> m.broker("coelho", "default").topic
'knative-broker-coelho-default'
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from eventing.router.jobsink import JobSink

log = logging.getLogger(__name__)

ROUTED_KINDS = {"Broker", "Trigger", "KafkaSource", "PingSource", "KafkaSink", "JobSink", "Service", "ConfigMap"}
ORDERED_ANNOTATION = "kafka.eventing.knative.dev/delivery.order"
# The router's own: how many deliveries a Trigger keeps in flight (ordered: how many key lanes). Knative's Kafka broker
# has no per-Trigger setting; its dispatcher bounds an unordered Trigger's in-flight deliveries by the consumer's
# `max.poll.records`, one value for every Trigger (docs/router-and-knative.md).
MAX_IN_FLIGHT_ANNOTATION = "coelho-realtime/delivery.max-in-flight"


class ManifestError(ValueError):
    """A manifest the router cannot execute (unknown reference, bad duration, unsupported filter)."""


_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text: str) -> float:
    """Seconds in an ISO 8601 duration as Knative writes them.

    >>> parse_duration("PT0.2S"), parse_duration("PT1M30S"), parse_duration("P1D")
    (0.2, 90.0, 86400.0)
    """
    match = _DURATION.match(text.strip())
    if not match or text.strip() in ("P", "PT"):
        raise ManifestError(f"not an ISO 8601 duration: {text!r}")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return parts.get("d", 0) * 86400 + parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0)


@dataclass(frozen=True)
class Destination:
    """A duck-typed Knative Destination: `ref` to an Addressable and/or a `uri`."""

    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    api_version: str | None = None
    uri: str | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None, namespace: str) -> Destination | None:
        if not raw:
            return None
        ref = raw.get("ref") or {}
        return cls(
            kind=ref.get("kind"),
            name=ref.get("name"),
            namespace=ref.get("namespace", namespace) if ref else None,
            api_version=ref.get("apiVersion"),
            uri=raw.get("uri"),
        )

    def describe(self) -> str:
        if self.kind:
            return f"{self.kind}/{self.namespace}/{self.name}" + (f" {self.uri}" if self.uri else "")
        return str(self.uri)


@dataclass(frozen=True)
class DeliverySpec:
    """Retry, backoff, timeout and dead-letter sink of a Broker or a Trigger (`spec.delivery`)."""

    retry: int = 0
    backoff_policy: str = "exponential"
    backoff_delay: float = 0.2
    timeout: float | None = None
    dead_letter_sink: Destination | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None, namespace: str, base: DeliverySpec | None = None) -> DeliverySpec:
        base = base or cls()
        if not raw:
            return base
        policy = str(raw.get("backoffPolicy", base.backoff_policy))
        if policy not in ("linear", "exponential"):
            raise ManifestError(f"backoffPolicy must be linear or exponential, not {policy!r}")
        return cls(
            retry=int(raw.get("retry", base.retry)),
            backoff_policy=policy,
            backoff_delay=parse_duration(raw["backoffDelay"]) if "backoffDelay" in raw else base.backoff_delay,
            timeout=parse_duration(raw["timeout"]) if "timeout" in raw else base.timeout,
            dead_letter_sink=Destination.parse(raw.get("deadLetterSink"), namespace) or base.dead_letter_sink,
        )

    @classmethod
    def for_trigger(cls, raw: Mapping[str, Any] | None, namespace: str, broker: DeliverySpec) -> DeliverySpec:
        """A Trigger's delivery merged with its Broker's as Knative's Kafka broker merges them.

        A Trigger without `retry`, `timeout` and `deadLetterSink` takes the Broker's spec whole. Otherwise each of
        retry, backoffDelay, timeout and deadLetterSink is the Trigger's when it is set and not zero, else the
        Broker's; so an explicit `retry: 0` (a zero is "unset" in Knative's data-plane contract) inherits the
        Broker's retries. backoffPolicy is the Trigger's (exponential when it names none).

        >>> broker = DeliverySpec(retry=5, backoff_policy="linear", backoff_delay=0.2, timeout=30.0)
        >>> DeliverySpec.for_trigger({"retry": 0}, "ns", broker).retry
        5
        >>> t = DeliverySpec.for_trigger({"timeout": "PT5S"}, "ns", broker)
        >>> (t.retry, t.backoff_policy, t.backoff_delay, t.timeout)
        (5, 'exponential', 0.2, 5.0)
        >>> DeliverySpec.for_trigger({"backoffPolicy": "linear"}, "ns", broker) == broker
        True
        """
        if not raw or not any(k in raw for k in ("retry", "timeout", "deadLetterSink")):
            return broker
        own = cls.parse(raw, namespace, base=cls(retry=0, backoff_delay=0.0))
        return cls(
            retry=own.retry or broker.retry,
            backoff_policy=own.backoff_policy,
            backoff_delay=own.backoff_delay or broker.backoff_delay,
            timeout=own.timeout or broker.timeout,
            dead_letter_sink=own.dead_letter_sink or broker.dead_letter_sink,
        )

    def backoff(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based): delay*n (linear) or delay*2^n (exponential)."""
        if self.backoff_policy == "linear":
            return self.backoff_delay * attempt
        return self.backoff_delay * (2.0**attempt)  # (int ** int is typed Any: a negative power is a float)


@dataclass(frozen=True)
class Broker:
    namespace: str
    name: str
    delivery: DeliverySpec
    partitions: int = 6

    @property
    def topic(self) -> str:
        return f"knative-broker-{self.namespace}-{self.name}"


@dataclass(frozen=True)
class Trigger:
    namespace: str
    name: str
    broker: str
    subscriber: Destination
    filter_attributes: Mapping[str, str]
    filters: tuple[Mapping[str, Any], ...]
    delivery: DeliverySpec
    ordered: bool
    max_in_flight: int | None = None  # MAX_IN_FLIGHT_ANNOTATION; None: the router's default (16)

    @property
    def consumer_group(self) -> str:
        return f"knative-trigger-{self.namespace}-{self.name}"


@dataclass(frozen=True)
class KafkaSource:
    namespace: str
    name: str
    topics: tuple[str, ...]
    consumer_group: str
    initial_offset: str
    sink: Destination
    ce_extensions: Mapping[str, str] = field(default_factory=dict)
    # spec.delivery: retries towards an HTTP sink, and the dead-letter sink of records that cannot be converted
    delivery: DeliverySpec | None = None


@dataclass(frozen=True)
class PingSource:
    namespace: str
    name: str
    schedule: str
    timezone: str | None
    content_type: str
    data: str
    sink: Destination
    data_base64: str = ""  # spec.dataBase64 (binary data, base64-encoded); mutually exclusive with `data`


@dataclass(frozen=True)
class KafkaSink:
    namespace: str
    name: str
    topic: str
    content_mode: str = "binary"


@dataclass
class Manifests:
    """Every routed resource, keyed by (namespace, name)."""

    brokers: dict[tuple[str, str], Broker] = field(default_factory=dict)
    triggers: dict[tuple[str, str], Trigger] = field(default_factory=dict)
    kafka_sources: dict[tuple[str, str], KafkaSource] = field(default_factory=dict)
    ping_sources: dict[tuple[str, str], PingSource] = field(default_factory=dict)
    kafka_sinks: dict[tuple[str, str], KafkaSink] = field(default_factory=dict)
    job_sinks: dict[tuple[str, str], JobSink] = field(default_factory=dict)
    services: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    config_maps: dict[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)

    def broker(self, namespace: str, name: str) -> Broker:
        try:
            return self.brokers[(namespace, name)]
        except KeyError:
            raise ManifestError(f"no Broker {namespace}/{name} in the manifests") from None

    # --- loading -----------------------------------------------------------------------------------
    @classmethod
    def load(cls, directory: Path, default_namespace: str = "coelho") -> Manifests:
        """Every YAML document under `directory` (recursively, sorted by path)."""
        docs: list[dict[str, Any]] = []
        for path in sorted(Path(directory).rglob("*.y*ml")):
            if path.suffix not in (".yaml", ".yml"):
                continue
            try:
                loaded = list(yaml.safe_load_all(path.read_text()))
            except yaml.YAMLError as exc:  # e.g. a template that is not plain YAML: not a routing manifest
                log.warning("skipping %s: not YAML (%s)", path, exc)
                continue
            docs.extend(doc for doc in loaded if isinstance(doc, dict))
        return cls.from_documents(docs, default_namespace)

    @classmethod
    def from_documents(cls, docs: Iterable[Mapping[str, Any]], default_namespace: str = "coelho") -> Manifests:
        m = cls()
        pending_brokers: list[Mapping[str, Any]] = []
        pending_triggers: list[Mapping[str, Any]] = []
        for doc in docs:
            kind = doc.get("kind")
            api = str(doc.get("apiVersion", ""))
            if kind not in ROUTED_KINDS:
                continue
            meta = doc.get("metadata") or {}
            ns = str(meta.get("namespace", default_namespace))
            name = str(meta.get("name", ""))
            spec = doc.get("spec") or {}
            if kind == "ConfigMap" and api == "v1":
                m.config_maps[(ns, name)] = {str(k): str(v) for k, v in (doc.get("data") or {}).items()}
            elif kind == "Service" and api.startswith("serving.knative.dev/"):
                m.services[(ns, name)] = doc
            elif kind == "Broker" and api.startswith("eventing.knative.dev/"):
                pending_brokers.append(doc)
            elif kind == "Trigger" and api.startswith("eventing.knative.dev/"):
                pending_triggers.append(doc)
            elif kind == "KafkaSink" and api.startswith("eventing.knative.dev/"):
                m.kafka_sinks[(ns, name)] = KafkaSink(
                    ns, name, str(spec["topic"]), str(spec.get("contentMode", "binary"))
                )
            elif kind == "JobSink" and api.startswith("sinks.knative.dev/"):
                m.job_sinks[(ns, name)] = JobSink.parse(ns, name, spec)
            elif kind == "KafkaSource" and api.startswith("sources.knative.dev/"):
                m.kafka_sources[(ns, name)] = KafkaSource(
                    namespace=ns,
                    name=name,
                    topics=tuple(spec.get("topics") or ()),
                    consumer_group=str(spec.get("consumerGroup") or f"knative-kafka-source-{name}"),
                    initial_offset=str(spec.get("initialOffset", "latest")),
                    sink=_required_destination(spec.get("sink"), ns, f"KafkaSource {ns}/{name} sink"),
                    ce_extensions={
                        str(k): str(v) for k, v in ((spec.get("ceOverrides") or {}).get("extensions") or {}).items()
                    },
                    delivery=DeliverySpec.parse(spec["delivery"], ns) if spec.get("delivery") else None,
                )
            elif kind == "PingSource" and api.startswith("sources.knative.dev/"):
                if spec.get("data") and spec.get("dataBase64"):
                    raise ManifestError(f"PingSource {ns}/{name}: data and dataBase64 are mutually exclusive")
                m.ping_sources[(ns, name)] = PingSource(
                    namespace=ns,
                    name=name,
                    schedule=str(spec["schedule"]),
                    timezone=spec.get("timezone"),
                    content_type=str(spec.get("contentType", "")),
                    data=str(spec.get("data", "")),
                    sink=_required_destination(spec.get("sink"), ns, f"PingSource {ns}/{name} sink"),
                    data_base64=str(spec.get("dataBase64", "")),
                )
        for doc in pending_brokers:
            meta, spec = doc.get("metadata") or {}, doc.get("spec") or {}
            ns = str(meta.get("namespace", default_namespace))
            partitions = 6
            config = spec.get("config") or {}
            if config.get("kind") == "ConfigMap":
                data = m.config_maps.get((str(config.get("namespace", ns)), str(config.get("name"))), {})
                partitions = int(data.get("default.topic.partitions", partitions))
            m.brokers[(ns, str(meta["name"]))] = Broker(
                ns, str(meta["name"]), DeliverySpec.parse(spec.get("delivery"), ns), partitions
            )
        for doc in pending_triggers:
            meta, spec = doc.get("metadata") or {}, doc.get("spec") or {}
            ns, name = str(meta.get("namespace", default_namespace)), str(meta["name"])
            broker_name = str(spec.get("broker", "default"))
            broker = m.broker(ns, broker_name)
            annotations = meta.get("annotations") or {}
            m.triggers[(ns, name)] = Trigger(
                namespace=ns,
                name=name,
                broker=broker_name,
                subscriber=_required_destination(spec.get("subscriber"), ns, f"Trigger {ns}/{name} subscriber"),
                filter_attributes={
                    str(k): str(v) for k, v in ((spec.get("filter") or {}).get("attributes") or {}).items()
                },
                filters=tuple(spec.get("filters") or ()),
                delivery=DeliverySpec.for_trigger(spec.get("delivery"), ns, broker.delivery),
                ordered=annotations.get(ORDERED_ANNOTATION) == "ordered",
                max_in_flight=parse_max_in_flight(annotations.get(MAX_IN_FLIGHT_ANNOTATION), f"Trigger {ns}/{name}"),
            )
        return m


def parse_max_in_flight(value: Any, what: str) -> int | None:
    """The value of a Trigger's MAX_IN_FLIGHT_ANNOTATION: a whole number from 1 to 10,000 (None when absent).

    >>> parse_max_in_flight("500", "t"), parse_max_in_flight(None, "t")
    (500, None)
    >>> parse_max_in_flight("0", "t")
    Traceback (most recent call last):
    ...
    eventing.router.manifests.ManifestError: t: coelho-realtime/delivery.max-in-flight must be 1 to 10000, not '0'
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= 10_000:
        raise ManifestError(f"{what}: {MAX_IN_FLIGHT_ANNOTATION} must be 1 to 10000, not {text!r}")
    return int(text)


def _required_destination(raw: Mapping[str, Any] | None, namespace: str, what: str) -> Destination:
    dest = Destination.parse(raw, namespace)
    if dest is None or not (dest.name or dest.uri):
        raise ManifestError(f"{what} names no ref and no uri")
    return dest
