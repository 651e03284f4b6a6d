"""The router's Prometheus metrics, in a registry of its own (several routers can live in one test process).

Consumer lag comes from the router's own counters (records fetched minus records committed, per consumer
group), because Tansu answers ListOffsets "latest" wrongly.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "coelho_router_events_in_total",
            "Events accepted by the router, per source (ingress, reply, a KafkaSource or PingSource name)",
            ["source"],
            registry=r,
        )
        self.events_out = Counter(
            "coelho_router_events_out_total",
            "Events a Trigger delivered to its subscriber (2xx), per trigger",
            ["trigger"],
            registry=r,
        )
        self.filtered = Counter(
            "coelho_router_events_filtered_total", "Events a Trigger's filter let through", ["trigger"], registry=r
        )
        self.retries = Counter("coelho_router_retries_total", "Delivery retries, per trigger", ["trigger"], registry=r)
        self.dead_lettered = Counter(
            "coelho_router_dead_lettered_total",
            "Events sent to the dead-letter sink (or dropped when there is none), per trigger",
            ["trigger", "code"],
            registry=r,
        )
        self.replies = Counter(
            "coelho_router_replies_total", "Reply events put back into the broker, per trigger", ["trigger"], registry=r
        )
        self.ingress_rejected = Counter(
            "coelho_router_ingress_rejected_total",
            "Requests the Broker ingress refused (400/404)",
            ["code"],
            registry=r,
        )
        self.latency = Histogram(
            "coelho_router_delivery_latency_seconds",
            "From taking an event off the broker topic to the subscriber's final answer (retries included)",
            ["trigger"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fetched = Counter(
            "coelho_router_records_fetched_total",
            "Records read from Kafka, per consumer group",
            ["consumer"],
            registry=r,
        )
        self.fetch_age = Histogram(
            "coelho_router_fetch_age_seconds",
            "From a record's Kafka timestamp (its producer's send) to the router reading it, per consumer group:"
            " the broker hop, its storage and the fetch wait",
            ["consumer"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.committed = Counter(
            "coelho_router_records_committed_total",
            "Records whose offset was committed (delivered, filtered out or dead-lettered), per consumer group",
            ["consumer"],
            registry=r,
        )
        self.lag = Gauge(
            "coelho_router_consumer_lag",
            "Records fetched but not yet committed, per consumer group (own counters, not broker end offsets)",
            ["consumer"],
            registry=r,
        )
        self.poisoned = Counter(
            "coelho_router_poison_records_total",
            "Records that could not be routed (not UTF-8, CR/LF in an attribute, ...) and were dead-lettered,"
            " per consumer group and reason",
            ["consumer", "reason"],
            registry=r,
        )
        self.worker_errors = Counter(
            "coelho_router_worker_errors_total",
            "Unexpected errors in a delivery worker (the event is dead-lettered, the worker carries on), per trigger",
            ["trigger"],
            registry=r,
        )
        self.consumer_restarts = Counter(
            "coelho_router_consumer_restarts_total",
            "Times a consumer group's polling loop failed and was restarted from its committed offsets",
            ["consumer"],
            registry=r,
        )
        self.producer_replaced = Counter(
            "coelho_router_producer_replaced_total",
            "Times the router's Kafka producer was in a fatal state (a write the broker's store refused) and was"
            " replaced by a new one",
            registry=r,
        )
        self.inflight = Gauge(
            "coelho_router_inflight_events", "Events being delivered right now, per trigger", ["trigger"], registry=r
        )
