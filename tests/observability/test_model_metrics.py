"""The model metrics learn-one exports are read from the models' real state in Redis: events learned, the main
progressive-validation metrics labelled by model version, snapshot size, last checkpoint time and version."""

from __future__ import annotations

import json
import time

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest

import producers
from eventing.domains import get_domain
from functions.model_state.metrics import ModelMetricsCollector
from functions.model_state.replica import ModelReplica
from ui.metrics_sources import parse_metrics


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
    assert value(samples, "coelho_model_log_behind", domain="eta", model=model) == 0
    for event in producers.generate("eta", seed=6, count=7):  # committed, not applied yet
        learner.log.append("record", event.data, learner.log.dedup_keys(None, None, event.data, "record"))
    assert value(scrape(client), "coelho_model_log_behind", domain="eta", model=model) == 7
    snapshot = client.hget(learner.mkey("snapshot"), "blob")
    assert value(samples, "coelho_model_state_bytes", domain="eta", model=model) == len(snapshot or b"")
    metrics = {dict(labels)["metric"]: v for (name, labels), v in samples.items() if name == "coelho_model_metric"}
    assert set(metrics) <= set(domain.main_metrics) and "MAE" in metrics
    assert metrics["MAE"] == learner.state.summary()["metrics"]["MAE"]
    assert {dict(labels)["model_version"] for (name, labels) in samples if name == "coelho_model_metric"} == {"none"}

    # A checkpoint (as the checkpoint function records it): time and version exported, metrics relabelled.
    now_ms = int(time.time() * 1000)
    client.set(learner.mkey("checkpoint"), json.dumps({"version": 4, "time_ms": now_ms, "events_learned": 300}))
    samples = scrape(client)
    assert (
        value(samples, "coelho_checkpoint_last_success_timestamp_seconds", domain="eta", model=model) == now_ms / 1000
    )
    assert value(samples, "coelho_checkpoint_model_version", domain="eta", model=model) == 4
    assert (
        value(samples, "coelho_model_metric", domain="eta", model=model, model_version="4", metric="MAE")
        == metrics["MAE"]
    )


def test_redis_down_exports_nothing_instead_of_failing_the_scrape() -> None:
    from coelho.settings import free_port

    client = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.3)
    assert scrape(client) == {}


def test_the_drift_counter_is_exported_at_zero_for_each_learner_model_from_the_start(private_redis: str) -> None:
    from prometheus_client import REGISTRY

    client = redis.Redis.from_url(private_redis)
    for name in ("tfd", "eta", "ecci"):
        learner = ModelReplica(client, get_domain(name), role="learner")
        labels = {"domain": name, "model": learner.model_name}
        value = REGISTRY.get_sample_value("coelho_drift_detected_total", labels)
        assert value is not None and value >= 0, labels


def test_the_summary_catches_up_with_the_last_events_of_a_burst(private_redis: str) -> None:
    client = redis.Redis.from_url(private_redis)
    learner = ModelReplica(client, get_domain("eta"), role="learner")
    events = [e.data for e in producers.generate("eta", seed=8, count=40)]

    def append(batch: list[dict]) -> None:
        for data in batch:
            learner.log.append("record", data, learner.log.dedup_keys(None, None, data, "record"))
        learner.catch_up()

    def summary_seq() -> int:
        return int(json.loads(client.hget(learner.mkey("summary"), "json") or b"{}").get("seq", 0))

    append(events[:30])  # the first batch writes the summary at once
    assert summary_seq() == 30
    append(events[30:])  # within the throttle interval: not written now ...
    deadline = time.monotonic() + 30
    while summary_seq() < 40 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert summary_seq() == 40  # ... but shortly after the burst ended, with nothing else arriving


def test_a_checkpoint_observes_its_duration(private_redis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client import REGISTRY

    import functions.model_state.registry
    from functions.checkpoint import Checkpointer

    monkeypatch.setattr(
        functions.model_state.registry,
        "log_checkpoint",
        lambda state, blob, summary: {
            "domain": state.domain_name,
            "model": state.model_name,
            "version": 1,
            "time_ms": int(time.time() * 1000),
        },
    )
    client = redis.Redis.from_url(private_redis)
    checkpointer = Checkpointer(client)
    model = checkpointer.models("tfd")[0].name
    labels = {"domain": "tfd", "model": model}
    before = REGISTRY.get_sample_value("coelho_checkpoint_duration_seconds_count", labels) or 0.0
    checkpointer.checkpoint("tfd", model)
    assert REGISTRY.get_sample_value("coelho_checkpoint_duration_seconds_count", labels) == before + 1
    assert (REGISTRY.get_sample_value("coelho_checkpoint_duration_seconds_sum", labels) or 0.0) > 0
