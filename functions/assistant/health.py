"""The platform's health as the assistant's `get_platform_health` tool reports it: every service checked the way
the runtime checks it (readiness over HTTP, a TCP connection for Kafka, the Broker, S3 and the dashboard), each
domain's learning and producer from Redis, and the functions' request errors from their /metrics.

Where each service is comes from the `PlatformReader` (functions/assistant/data.py: the cluster's environment, else
the local ports); learn-one may be one Service per domain, asked once per distinct URL.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import redis
import requests

from eventing.domains import DOMAINS
from functions.assistant.readonly_redis import reply_text
from functions.model_state.keys import key, model_key
from producers.controls import enabled_key, rate_key

if TYPE_CHECKING:
    from functions.assistant.data import PlatformReader

HTTP_TIMEOUT = 1.5  # every HTTP read of the assistant's tools
# A PromQL query whose sample above 0 means Kafka is up, used instead of a TCP connection when set (a cluster,
# where Kafka's NetworkPolicy admits only the pods that produce and consume: knative/infrastructure/kafka.yaml).
KAFKA_HEALTH_QUERY_ENV = "COELHO_KAFKA_HEALTH_QUERY"


def platform_health(reader: PlatformReader) -> dict[str, Any]:
    """Every service up or not, each domain's learning and producer, and the functions' request errors."""
    services = service_states(reader)
    domains = {}
    for name in DOMAINS:
        domains[name] = domain_health(reader, name)
    return {
        "services": services,
        "down": sorted(s for s, v in services.items() if v != "up"),
        "domains": domains,
        "request_errors": request_errors(reader),
    }


def service_states(reader: PlatformReader) -> dict[str, str]:
    """Each service: "up", "down" or "not ready (code)"; a service with several instances names who is not up."""
    out: dict[str, str] = {}
    try:
        reader.redis.ping()
        out["redis"] = "up"
    except redis.RedisError:
        out["redis"] = "down"
    for name in ("learn", "predict", "checkpoint", "sql", "lake"):
        out[name] = _combined(
            {who: _http_status(f"{url}/health/readiness") for who, url in _distinct(reader.service_urls(name))}
        )
    out["mlflow"] = _http_status(f"{reader.mlflow_uri}/health")
    out["prometheus"] = _http_status(f"{reader.service_url('prometheus')}/-/ready")
    for name in ("broker", "kafka", "s3", "dashboard"):
        out[name] = "up" if _tcp_open(*reader.service_address(name)) else "down"
    query = reader.environ.get(KAFKA_HEALTH_QUERY_ENV, "").strip()
    if query:  # a cluster: the assistant's pod may not connect to Kafka (its NetworkPolicy), Prometheus tells
        out["kafka"] = _prometheus_says_up(reader.service_url("prometheus"), query)
    return out


def _prometheus_says_up(prometheus_url: str, query: str) -> str:
    """ "up" when the PromQL query returns a sample above 0 (e.g. the Kafka exporter's broker count), "down" when it
    returns none or 0, "unknown (Prometheus unreachable)" when Prometheus does not answer."""
    try:
        resp = requests.get(f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=HTTP_TIMEOUT)
        result = resp.json()["data"]["result"]
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return "unknown (Prometheus unreachable)"
    values = []
    for sample in result:
        try:
            values.append(float(sample["value"][1]))
        except (KeyError, IndexError, TypeError, ValueError):
            continue
    return "up" if any(v > 0 for v in values) else "down"


def domain_health(reader: PlatformReader, domain: str) -> dict[str, Any]:
    """A domain's live model, log, learning lag, recent event rate, training switch, drifts and producer."""
    model = reader.live_model(domain)
    summary = reader.summary(domain, model) or {}
    entries = reader.redis.xrevrange(key(domain, "log"), count=200)
    rate = None
    if len(entries) >= 2:
        newest, oldest = int(entries[0][1][b"t"]), int(entries[-1][1][b"t"])
        if newest > oldest:
            rate = round((len(entries) - 1) / ((newest - oldest) / 1000), 2)
    last_ms = int(entries[0][1][b"t"]) if entries else None
    enabled, producer_rate = reader.redis.mget(enabled_key(domain), rate_key(domain))
    drift_last = reader.redis.zrevrange(model_key(domain, model, "drift"), 0, 0)
    head = int(reply_text(reader.redis.get(key(domain, "seq"))) or 0)
    return {
        "model": model,
        "events_in_log": head,
        "events_learned": summary.get("events_learned"),
        "learning_lag_events": head - int(summary.get("seq", 0)) if summary else None,
        "events_per_s_recent": rate,
        "seconds_since_last_event": round(time.time() - last_ms / 1000, 1) if last_ms else None,
        "training": "paused" if reader.redis.get(key(domain, "paused_at")) is not None else "live",
        "drifts_detected": reader.redis.zcard(model_key(domain, model, "drift")),
        "last_drift": json.loads(drift_last[0]) if drift_last else None,
        "producer": {
            "enabled": None if enabled is None else reply_text(enabled) == "1",
            "rate": reply_text(producer_rate),
        },
    }


def request_errors(reader: PlatformReader) -> dict[str, Any]:
    """Requests and 4xx/5xx answers per function, from their /metrics (learn-one: summed over its Services)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, Any] = {}
    for name in ("learn", "predict", "checkpoint", "lake"):
        counts = {"requests": 0, "4xx": 0, "5xx": 0}
        texts = []
        for _, url in _distinct(reader.service_urls(name)):  # learn-one: the sum over its per-domain Services
            try:
                texts.append(requests.get(f"{url}/metrics", timeout=HTTP_TIMEOUT).text)
            except requests.RequestException:
                continue
        if not texts:
            continue
        families = [f for text in texts for f in text_string_to_metric_families(text)]
        for family in families:
            if family.name != "coelho_function_requests":
                continue
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                code = sample.labels.get("code", "")
                counts["requests"] += int(sample.value)
                if code.startswith("4"):
                    counts["4xx"] += int(sample.value)
                elif code.startswith("5"):
                    counts["5xx"] += int(sample.value)
        out[name] = counts
    return out


def _distinct(urls: Mapping[str, str]) -> list[tuple[str, str]]:
    """(who, URL) once per URL: one learn-one serving every domain is asked once."""
    seen: dict[str, str] = {}
    for who, url in urls.items():
        seen.setdefault(url, who)
    return [(who, url) for url, who in seen.items()]


def _combined(statuses: Mapping[str, str]) -> str:
    """One status for a service with several instances: theirs when they agree, else who is not up.

    >>> _combined({"learn": "up"}), _combined({"tfd": "up", "eta": "down", "ecci": "up"})
    ('up', 'eta: down')
    """
    values = set(statuses.values())
    if len(values) == 1:
        return values.pop()
    return ", ".join(f"{who}: {status}" for who, status in statuses.items() if status != "up")


def _http_status(url: str) -> str:
    try:
        response = requests.get(url, timeout=HTTP_TIMEOUT)
    except requests.RequestException:
        return "down"
    return "up" if response.status_code == 200 else f"not ready ({response.status_code})"


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False
