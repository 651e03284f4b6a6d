"""Prometheus metrics of the models, read from their live state in Redis at scrape time.

learn-one registers `ModelMetricsCollector` (one replica, min-scale 1 in the cluster, so the figures are exported
once). Every value comes from what the learners and the checkpoint function already keep in Redis, so the numbers
are the model's, not one process's:

    coelho_events_learned_total{domain,model}                       events the model has learned (summary)
    coelho_model_metric{domain,model,model_version,metric}          main progressive-validation metrics (summary)
    coelho_model_state_bytes{domain,model}                          size of the latest snapshot (pickle + lz4)
    coelho_checkpoint_last_success_timestamp_seconds{domain,model}  when the last checkpoint reached MLflow
    coelho_checkpoint_model_version{domain,model}                   the registered version of that checkpoint
    coelho_model_log_behind{domain,model}                           entries committed to the domain's log that the
                                                                    model has not applied yet (summary, <= 0.5 s old)

`RedisMemoryCollector` (registered with it) exports Redis' own memory, which Redis refuses writes past (maxmemory,
noeviction): coelho_redis_memory_used_bytes and coelho_redis_memory_max_bytes (0: no limit).

model_version is the MLflow version of the last checkpoint the live model builds on ("none" before the first).
The keys read are the ones functions/model_state/replica.py writes (layout in functions/model_state/keys.py).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from eventing.domains import DOMAINS
from functions.model_state.keys import key, log_behind, model_key

log = logging.getLogger("coelho.functions.model_state.metrics")


class ModelMetricsCollector(Collector):
    """Reads each model's summary, snapshot size and last checkpoint from Redis when Prometheus scrapes."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def _models(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for name in DOMAINS:
            for model in sorted(
                m.decode() if isinstance(m, bytes) else str(m) for m in self.redis.smembers(key(name, "models"))
            ):
                out.append((name, model))
        return out

    def collect(self) -> Iterable[Any]:
        learned = CounterMetricFamily(
            "coelho_events_learned", "Events the model has learned", labels=["domain", "model"]
        )
        metric = GaugeMetricFamily(
            "coelho_model_metric",
            "Main progressive-validation (test-then-train) metrics of the live model",
            labels=["domain", "model", "model_version", "metric"],
        )
        state_bytes = GaugeMetricFamily(
            "coelho_model_state_bytes", "Size of the model's latest snapshot (pickle + lz4)", labels=["domain", "model"]
        )
        checkpoint_at = GaugeMetricFamily(
            "coelho_checkpoint_last_success_timestamp_seconds",
            "When the model's last checkpoint was registered in MLflow",
            labels=["domain", "model"],
        )
        checkpoint_version = GaugeMetricFamily(
            "coelho_checkpoint_model_version",
            "MLflow registered model version of the last checkpoint",
            labels=["domain", "model"],
        )
        behind = GaugeMetricFamily(
            "coelho_model_log_behind",
            "Events committed to the domain's log that the model has not applied yet",
            labels=["domain", "model"],
        )
        try:
            models = self._models()
            pipe = self.redis.pipeline(transaction=False)
            for domain, model in models:
                pipe.hget(model_key(domain, model, "summary"), "json")
                pipe.hstrlen(model_key(domain, model, "snapshot"), "blob")
                pipe.get(model_key(domain, model, "checkpoint"))
                pipe.get(key(domain, "seq"))
            replies = pipe.execute()
        except (redis.RedisError, OSError) as exc:  # Redis down: export nothing rather than fail the scrape
            log.warning("model metrics unavailable: %s", exc)
            return
        for index, (domain, model) in enumerate(models):
            summary_raw, blob_size, checkpoint_raw, head = replies[4 * index : 4 * index + 4]
            summary = json.loads(summary_raw) if summary_raw else {}
            checkpoint = json.loads(checkpoint_raw) if checkpoint_raw else {}
            version = str(checkpoint.get("version", "none"))
            if summary:
                learned.add_metric([domain, model], float(summary.get("events_learned", 0)))
                behind.add_metric([domain, model], float(log_behind(head, summary.get("seq"))))
                for name in DOMAINS[domain].main_metrics:
                    value = (summary.get("metrics") or {}).get(name)
                    if isinstance(value, int | float) and math.isfinite(value):
                        metric.add_metric([domain, model, version, name], float(value))
            if blob_size:
                state_bytes.add_metric([domain, model], float(blob_size))
            if checkpoint.get("time_ms"):
                checkpoint_at.add_metric([domain, model], float(checkpoint["time_ms"]) / 1000)
                checkpoint_version.add_metric([domain, model], float(checkpoint.get("version", 0)))
        yield from (learned, metric, state_bytes, checkpoint_at, checkpoint_version, behind)

    def describe(self) -> Iterable[Any]:
        return []  # collected at scrape time only (no Redis call at registration)


class RedisMemoryCollector(Collector):
    """Redis' INFO memory at scrape time: what it uses and its maxmemory (CoelhoRedisMemoryHigh alerts at 80 %)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def collect(self) -> Iterable[Any]:
        try:
            memory = self.redis.info("memory")
        except (redis.RedisError, OSError) as exc:
            log.warning("Redis memory unavailable: %s", exc)
            return
        yield GaugeMetricFamily("coelho_redis_memory_used_bytes", "Memory Redis uses", value=memory["used_memory"])
        yield GaugeMetricFamily(
            "coelho_redis_memory_max_bytes",
            "Redis maxmemory (0: no limit); past it Redis refuses writes",
            value=memory.get("maxmemory", 0),
        )

    def describe(self) -> Iterable[Any]:
        return []


_registered: ModelMetricsCollector | None = None
_memory: RedisMemoryCollector | None = None


def register(client: redis.Redis) -> ModelMetricsCollector:
    """Export the model metrics in this process's default registry (once; later calls switch the Redis client)."""
    global _registered, _memory
    from prometheus_client import REGISTRY

    if _registered is None or _memory is None:
        _registered = ModelMetricsCollector(client)
        _memory = RedisMemoryCollector(client)
        REGISTRY.register(_registered)
        REGISTRY.register(_memory)
    else:
        _registered.redis = client
        _memory.redis = client
    return _registered
