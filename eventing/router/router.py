"""The local router: Knative Eventing (Kafka Broker, Triggers, KafkaSource, PingSource) for one machine.

>>> # router = Router(Settings.load(), manifests_dir=Path("knative"), subscribers={"coelho-learn": "http://..."})
>>> # router.start(); router.wait_ready(30); ...; router.stop()
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from http.server import ThreadingHTTPServer
from pathlib import Path

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from coelho.settings import PROJECT_ROOT, Settings
from eventing.domains import DOMAINS
from eventing.router.consumer import CommittingConsumer
from eventing.router.dispatcher import BrokerFanout, DirectBrokerSink, TriggerDispatcher
from eventing.router.httpserver import MetricsHandler, bounded_handler, limits_from_env, serve
from eventing.router.ingress import BrokerIngress
from eventing.router.jobsink import LocalJobSink
from eventing.router.manifests import DeliverySpec, Destination, ManifestError, Manifests
from eventing.router.metrics import RouterMetrics
from eventing.router.producer import RecoveringProducer
from eventing.router.sinks import HttpSink, KafkaTopicSink, Sink
from eventing.router.sources import KafkaSourceAdapter, PingSourceRunner

log = logging.getLogger(__name__)

DEFAULT_MANIFESTS = PROJECT_ROOT / "knative"
SERVICE_PREFIX = "coelho-"
# Every produce request becomes objects on Tansu's S3 store and every consumer group reads each object back, so
# the router's writes (KafkaSource records into the Broker, replies, dead letters) gather into larger batches.
LINGER_MS = 10
BATCH_SIZE = 256 * 1024
STOP_TIMEOUT_S = 2.5  # SIGTERM to exit; the runtime SIGKILLs after 10 s


class Router:
    def __init__(
        self,
        settings: Settings,
        manifests_dir: Path = DEFAULT_MANIFESTS,
        subscribers: Mapping[str, str] | None = None,
        workers: int = 16,
        serve_metrics: bool = True,
        shared_group: bool | None = None,
        max_body_bytes: int | None = None,
        http_timeout: float | None = None,
        direct_sources: bool | None = None,
    ):
        self.settings = settings
        self.manifests = Manifests.load(manifests_dir, settings.namespace)
        self.subscribers = dict(subscribers or {})
        self.workers = workers
        self.serve_metrics = serve_metrics
        self.metrics = RouterMetrics()
        self.stopping = threading.Event()
        self.bootstrap = settings.kafka_bootstrap
        self.producer: RecoveringProducer | None = None
        self.dispatchers: list[TriggerDispatcher] = []
        self.fanouts: list[BrokerFanout] = []
        # One consumer group per Broker for all its Triggers (ADR 0070); COELHO_ROUTER_SHARED_GROUP=0: one per Trigger.
        self.shared_group = (
            shared_group if shared_group is not None else (os.environ.get("COELHO_ROUTER_SHARED_GROUP", "1") != "0")
        )
        # KafkaSources whose sink is a Broker hand their events to its Triggers directly (ADR 0116);
        # COELHO_ROUTER_DIRECT_SOURCES=0 (or direct_sources=False) writes them to the Broker topic first.
        self.direct_sources = (
            direct_sources if direct_sources is not None else os.environ.get("COELHO_ROUTER_DIRECT_SOURCES", "1") != "0"
        )
        self.kafka_sources: list[KafkaSourceAdapter] = []
        self.ping_sources: list[PingSourceRunner] = []
        self.ingress: BrokerIngress | None = None
        self.job_sinks: dict[tuple[str, str], LocalJobSink] = {}
        self._metrics_server: object = None
        # Limits of the router's HTTP servers: arguments, else COELHO_ROUTER_MAX_BODY_BYTES / _HTTP_TIMEOUT_S.
        env_body, env_timeout = limits_from_env()
        self.max_body_bytes = max_body_bytes if max_body_bytes is not None else env_body
        self.http_timeout = http_timeout if http_timeout is not None else env_timeout

    # --- resolving references ------------------------------------------------------------------------
    def service_url(self, name: str) -> str:
        """Local address of a Knative Service: the override map, else the Settings port of the function. A
        per-domain Service (coelho-learn-tfd: one per domain on a cluster) is its function's one local process."""
        if name in self.subscribers:
            return self.subscribers[name]
        function, _, domain = name.rpartition("-")
        if domain in DOMAINS and function.removeprefix(SERVICE_PREFIX) in self.settings.ports:
            return self.service_url(function)
        port_name = name.removeprefix(SERVICE_PREFIX)
        if port_name not in self.settings.ports:
            raise ManifestError(f"Service {name} has no local port (Settings.ports[{port_name!r}])")
        return f"http://{self.settings.host}:{self.settings.ports[port_name]}/"

    def resolve_url(self, dest: Destination) -> str:
        if dest.kind is None:
            if not dest.uri:
                raise ManifestError("destination without ref or uri")
            return self.subscribers.get(dest.uri, dest.uri)
        if dest.kind == "Service":
            base = self.service_url(str(dest.name))
            return base.rstrip("/") + dest.uri if dest.uri else base
        if dest.kind == "JobSink":
            return self._job_sink(str(dest.namespace), str(dest.name)).url
        raise ManifestError(f"cannot resolve {dest.describe()} to a URL")

    def resolve_sink(self, dest: Destination, spec: DeliverySpec | None = None) -> Sink:
        assert self.producer is not None
        if dest.kind == "Broker":
            broker = self.manifests.broker(str(dest.namespace), str(dest.name))
            return KafkaTopicSink(
                self.producer, broker.topic, self.stopping, address=self._broker_address(broker.namespace, broker.name)
            )
        if dest.kind == "KafkaSink":
            sink = self.manifests.kafka_sinks.get((str(dest.namespace), str(dest.name)))
            if sink is None:
                raise ManifestError(f"no KafkaSink {dest.namespace}/{dest.name} in the manifests")
            return KafkaTopicSink(self.producer, sink.topic, self.stopping)
        return HttpSink(self.resolve_url(dest), spec or self._default_delivery(), self.stopping)

    def _job_sink(self, namespace: str, name: str) -> LocalJobSink:
        """The JobSink's local server (eventing/router/jobsink.py), started when first referenced."""
        found = self.job_sinks.get((namespace, name))
        if found is None:
            manifest = self.manifests.job_sinks.get((namespace, name))
            if manifest is None:
                raise ManifestError(f"no JobSink {namespace}/{name} in the manifests")
            found = LocalJobSink(
                manifest,
                self.settings.host,
                self.settings.run_dir / "jobsinks",
                self.settings.function_env(),
                max_body_bytes=self.max_body_bytes,
                timeout=self.http_timeout,
            )
            found.start()
            self.job_sinks[(namespace, name)] = found
        return found

    def _broker_address(self, namespace: str, name: str) -> str:
        return f"{self.settings.url('broker')}/{namespace}/{name}"

    def _default_delivery(self) -> DeliverySpec:
        return DeliverySpec(retry=3, backoff_delay=0.2)

    # --- life cycle ----------------------------------------------------------------------------------
    def _new_kafka_producer(self) -> KafkaProducer:
        # Not idempotent (kafka-python's default): across a broker restart the S3-backed broker acknowledged a retried
        # write as a duplicate of one it had not kept, so an acknowledged event was lost (ADR 0117). A plain producer
        # writes the retry again (a duplicate at worst, which the functions drop); one request in flight per
        # connection keeps each partition's order through retries.
        return KafkaProducer(
            bootstrap_servers=self.bootstrap,
            linger_ms=LINGER_MS,
            batch_size=BATCH_SIZE,
            client_id="coelho-router",
            enable_idempotence=False,
            acks="all",
            max_in_flight_requests_per_connection=1,
        )

    def _connect(self, timeout: float) -> None:
        """The one producer of every Broker/KafkaSink write; replaced when it turns fatal (ADR 0117)."""
        deadline = time.monotonic() + timeout
        replaced = self.metrics.producer_replaced
        while True:
            try:
                self.producer = RecoveringProducer(self._new_kafka_producer, on_replaced=replaced.inc)
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Kafka at {self.bootstrap} unreachable: {exc}") from exc
                time.sleep(0.5)

    def ensure_topics(self) -> None:
        """Create the Broker topics, KafkaSink topics and source topics that do not exist yet."""
        wanted: dict[str, int] = {}
        for broker in self.manifests.brokers.values():
            wanted[broker.topic] = broker.partitions
        default_partitions = max([b.partitions for b in self.manifests.brokers.values()] or [3])
        for sink in self.manifests.kafka_sinks.values():
            wanted.setdefault(sink.topic, default_partitions)
        for source in self.manifests.kafka_sources.values():
            for topic in source.topics:
                wanted.setdefault(topic, default_partitions)
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="coelho-router-admin")
        try:
            existing = set(admin.list_topics())
            missing = [NewTopic(t, n, 1) for t, n in wanted.items() if t not in existing]
            if missing:
                try:
                    admin.create_topics(missing)
                except Exception as exc:  # created meanwhile by a producer
                    log.info("create_topics: %s", exc)
        finally:
            admin.close()

    def start(self, connect_timeout: float = 30.0) -> None:
        self._connect(connect_timeout)
        assert self.producer is not None
        self.ensure_topics()
        broker_sinks = {
            key: KafkaTopicSink(self.producer, b.topic, self.stopping, address=self._broker_address(*key))
            for key, b in self.manifests.brokers.items()
        }
        by_broker: dict[tuple[str, str], list[TriggerDispatcher]] = {}
        for trigger in self.manifests.triggers.values():
            broker = self.manifests.broker(trigger.namespace, trigger.broker)
            dls_dest = trigger.delivery.dead_letter_sink
            dispatcher = TriggerDispatcher(
                trigger,
                self.resolve_url(trigger.subscriber),
                broker.topic,
                self.bootstrap,
                broker_sinks[(broker.namespace, broker.name)],
                self.resolve_sink(dls_dest, trigger.delivery) if dls_dest else None,
                self.metrics,
                workers=self.workers,
                own_consumer=not self.shared_group,
            )
            self.dispatchers.append(dispatcher)
            by_broker.setdefault((broker.namespace, broker.name), []).append(dispatcher)
        if self.shared_group:
            for (namespace, name), dispatchers in by_broker.items():
                broker = self.manifests.broker(namespace, name)
                broker_dls = broker.delivery.dead_letter_sink
                self.fanouts.append(
                    BrokerFanout(
                        broker.topic,
                        f"knative-broker-{namespace}-{name}-triggers",
                        self.bootstrap,
                        dispatchers,
                        self.metrics,
                        legacy_groups=[d.trigger.consumer_group for d in dispatchers],
                        dead_letter_sink=self.resolve_sink(broker_dls) if broker_dls else None,
                        source=f"/apis/v1/namespaces/{namespace}/brokers/{name}",
                    )
                )
        fanout_of = {fanout.topic: fanout for fanout in self.fanouts}
        for source in self.manifests.kafka_sources.values():
            source_dls = source.delivery.dead_letter_sink if source.delivery else None
            sink = self.resolve_sink(source.sink, source.delivery)
            max_inflight = 2000  # records written to Kafka, not yet acknowledged
            if self.direct_sources and source.sink.kind == "Broker":
                broker = self.manifests.broker(str(source.sink.namespace), str(source.sink.name))
                fanout = fanout_of.get(broker.topic)
                if fanout is not None:
                    sink = DirectBrokerSink(fanout, sink.address)
                    # records being delivered: a slow or failing Trigger holds them (as the shared Broker group)
                    max_inflight = fanout.consumer.max_inflight
            self.kafka_sources.append(
                KafkaSourceAdapter(
                    source,
                    sink,
                    self.bootstrap,
                    self.metrics,
                    dead_letter_sink=self.resolve_sink(source_dls) if source_dls else None,
                    max_inflight=max_inflight,
                )
            )
        for ping in self.manifests.ping_sources.values():
            self.ping_sources.append(PingSourceRunner(ping, self.resolve_sink(ping.sink), self.metrics))
        for dispatcher in self.dispatchers:
            dispatcher.start()
        for fanout in self.fanouts:
            fanout.start()
        for adapter in self.kafka_sources:
            adapter.start()
        for runner in self.ping_sources:
            runner.start()
        self.ingress = BrokerIngress(
            self.settings.host,
            self.settings.ports["broker"],
            broker_sinks,
            self.settings.namespace,
            self.ready,
            self.metrics,
            max_body_bytes=self.max_body_bytes,
            timeout=self.http_timeout,
        )
        self.ingress.start()
        if self.serve_metrics:
            handler = bounded_handler(MetricsHandler, 0, self.http_timeout, registry=self.metrics.registry)
            server = serve(self.settings.host, self.settings.ports["router_metrics"], handler)
            threading.Thread(target=server.serve_forever, name="router-metrics", daemon=True).start()
            self._metrics_server = server
        log.info(
            "router: %d triggers, %d KafkaSources, %d PingSources; ingress %s",
            len(self.dispatchers),
            len(self.kafka_sources),
            len(self.ping_sources),
            self.settings.broker_url,
        )

    def planned_consumer_groups(self) -> list[str]:
        """The consumer groups `start` joins: one per KafkaSource, then one per Broker with Triggers (shared
        group, ADR 0070) or, with `shared_group=False`, one per Trigger (`knative-trigger-<ns>-<name>`, as
        Knative's Kafka broker)."""
        groups = [source.consumer_group for source in self.manifests.kafka_sources.values()]
        if self.shared_group:
            brokers = dict.fromkeys((t.namespace, t.broker) for t in self.manifests.triggers.values())
            groups += [f"knative-broker-{ns}-{name}-triggers" for ns, name in brokers]
        else:
            groups += [t.consumer_group for t in self.manifests.triggers.values()]
        return groups

    def consumers(self) -> list[CommittingConsumer]:
        own = [d.consumer for d in self.dispatchers if d.consumer is not None]
        return [s.consumer for s in self.kafka_sources] + [f.consumer for f in self.fanouts] + own

    def ready(self) -> bool:
        """Every consumer group has its partitions and its polling thread runs."""
        return all(c.healthy for c in self.consumers())

    def wait_ready(self, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return True
            time.sleep(0.1)
        return False

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop taking events, let deliveries in progress end, write what is pending, commit, close.

        Bounded by `timeout` overall (SIGTERM must not end in the runtime's SIGKILL): every component is told to
        stop first and then waited for in parallel. Deliveries still running at the worker deadline are abandoned
        uncommitted (they come again after a restart, at-least-once); the consumers commit what finished.
        """
        deadline = time.monotonic() + timeout
        workers_deadline = deadline - 0.4 * timeout  # leave time to flush replies, commit and leave the groups
        if self.ingress is not None:
            self.ingress.stop()
        for job_sink in self.job_sinks.values():
            job_sink.stop()
        for ping in self.ping_sources:
            ping.stopping.set()
        for dispatcher in self.dispatchers:
            dispatcher.signal_workers()
        self.stopping.set()
        for dispatcher in self.dispatchers:
            dispatcher.join_workers(workers_deadline)
        if self.producer is not None:
            self.producer.flush(max(0.1, deadline - time.monotonic() - 0.5))
        consumers = self.consumers()
        for consumer in consumers:
            consumer.stopping.set()
        for consumer in consumers:
            consumer.join(deadline - time.monotonic())
        if self.producer is not None:
            self.producer.close(0.5)
        server = self._metrics_server
        if isinstance(server, ThreadingHTTPServer):
            server.shutdown()
            server.server_close()
