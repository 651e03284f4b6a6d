"""Prometheus metrics of a producer, served on HOST:<metrics-port>/metrics (HOST from the environment, default
127.0.0.1; the cluster's coelho-config sets 0.0.0.0 so that the PodMonitor can scrape the pod).

coelho_producer_events_total{domain}    events acknowledged by the broker (records and labels)
coelho_producer_errors_total{domain}    events the broker did not take, and replay lines skipped as invalid
coelho_producer_fraud_ratio{domain}     share of fraudulent transactions produced so far (tfd)
coelho_producer_active_sessions{domain} shopping sessions in progress in the stream (ecci)
coelho_producer_rate{domain}            target rate in events/s (0 = as fast as possible)
coelho_producer_enabled{domain}         1 producing, 0 paused
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class ProducerMetrics:
    """One producer's metrics in their own registry (several producers can share a process in tests)."""

    def __init__(self, domain: str) -> None:
        self.registry = CollectorRegistry()
        labels = ["domain"]
        self.events = Counter(
            "coelho_producer_events", "Events acknowledged by the broker", labels, registry=self.registry
        ).labels(domain)
        self.errors = Counter(
            "coelho_producer_errors",
            "Events not produced (broker errors, invalid replay lines)",
            labels,
            registry=self.registry,
        ).labels(domain)
        self._fraud_ratio = Gauge(
            "coelho_producer_fraud_ratio", "Share of fraudulent transactions produced", labels, registry=self.registry
        )
        self._active_sessions = Gauge(
            "coelho_producer_active_sessions", "Shopping sessions in progress", labels, registry=self.registry
        )
        self.rate = Gauge(
            "coelho_producer_rate", "Target rate, events/s (0 = as fast as possible)", labels, registry=self.registry
        ).labels(domain)
        self.enabled = Gauge("coelho_producer_enabled", "1 producing, 0 paused", labels, registry=self.registry).labels(
            domain
        )
        self.domain = domain

    def set_gauges(self, gauges: dict[str, float]) -> None:
        """Generator figures (fraud_ratio, active_sessions) -> their gauges; a domain without one shows none."""
        if "fraud_ratio" in gauges:
            self._fraud_ratio.labels(self.domain).set(gauges["fraud_ratio"])
        if "active_sessions" in gauges:
            self._active_sessions.labels(self.domain).set(gauges["active_sessions"])

    def serve(self, port: int, host: str | None = None) -> None:
        """Serve /metrics on host:port; host None: HOST from the environment, else 127.0.0.1."""
        host = host or os.environ.get("HOST", "").strip() or "127.0.0.1"
        started = start_http_server(port, addr=host, registry=self.registry)
        self._server = started[0] if isinstance(started, tuple) else None

    def close(self) -> None:
        server = getattr(self, "_server", None)
        if server is not None:
            server.shutdown()
            server.server_close()
