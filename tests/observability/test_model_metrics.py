"""The model metrics learn-one exports are read from the models' real state in Redis: events learned, the main
progressive-validation metrics labelled by model version, snapshot size, last checkpoint time and version."""

from __future__ import annotations

import json
import time

import redis
from prometheus_client import CollectorRegistry, generate_latest

import producers
from eventing.domains import get_domain
from functions.model_metrics import ModelMetricsCollector
from functions.model_store import ModelReplica
from ui.observability import parse_metrics


def scrape(client: redis.Redis) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    registry = CollectorRegistry()
    registry.register(ModelMetricsCollector(client))
    return parse_metrics(generate_latest(registry).decode())


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_model_metrics_come_from_the_state_in_redis(private_redis: str) -> None:
    client = redis.Redis.from_url(private_redis)
    assert scrape(client) == {}  # no model yet: nothing exported, and no error
    domain = get_domain("eta")
    learner = ModelReplica(client, domain, role="learner")
    for event in producers.generate("eta", seed=5, count=300):
        learner.log.append("record", event.data, learner.log.dedup_keys(None, None, event.data, "record"))
    learner.catch_up()
    learner.write_summary()
    learner.write_snapshot(learner.state)
    model = learner.model_name

    samples = scrape(client)
    assert value(samples, "coelho_events_learned_total", domain="eta", model=model) == 300
    snapshot = client.hget(learner.mkey("snapshot"), "blob")
    assert value(samples, "coelho_model_state_bytes", domain="eta", model=model) == len(snapshot)
    metrics = {dict(labels)["metric"]: v for (name, labels), v in samples.items() if name == "coelho_model_metric"}
    assert set(metrics) <= set(domain.main_metrics) and "MAE" in metrics
    assert metrics["MAE"] == learner.state.summary()["metrics"]["MAE"]
    assert {dict(labels)["model_version"] for (name, labels) in samples if name == "coelho_model_metric"} == {"none"}

    # A checkpoint (as the checkpoint function records it): time and version exported, metrics relabelled.
    now_ms = int(time.time() * 1000)
    client.set(learner.mkey("checkpoint"), json.dumps({"version": 4, "time_ms": now_ms, "events_learned": 300}))
    samples = scrape(client)
    assert value(samples, "coelho_checkpoint_last_success_timestamp_seconds", domain="eta", model=model) == now_ms / 1000
    assert value(samples, "coelho_checkpoint_model_version", domain="eta", model=model) == 4
    assert value(samples, "coelho_model_metric", domain="eta", model=model, model_version="4", metric="MAE") == metrics["MAE"]


def test_redis_down_exports_nothing_instead_of_failing_the_scrape() -> None:
    from coelho.settings import free_port

    client = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.3)
    assert scrape(client) == {}
