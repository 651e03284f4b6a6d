"""What the assistant's tools read: live model state in Redis, versions in MLflow, the lake (through the sql
function), where the services are, and their health (functions/assistant/health.py). Read only.

The model state belongs to the functions (functions/model_state/replica.py: a per-domain event log plus snapshots);
this module only reads it, through `ReadOnlyRedis` (functions/assistant/readonly_redis.py), which refuses every
command that is not a read. The live model the explain tool uses is a follower `ModelReplica` kept in this
process: it loads the latest snapshot and replays the log after it, so it equals the learner's model (the state is
a deterministic function of the log), and replaying gives back the learner's own test-then-train predictions: the
"recent predictions" with their true outcomes.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import redis
import requests

from coelho.settings import Settings
from eventing.domains import DOMAINS, get_domain
from eventing.schema import ValidationError
from functions.assistant import health
from functions.assistant.explain import explain
from functions.assistant.health import HTTP_TIMEOUT
from functions.assistant.readonly_redis import ReadOnlyRedis, reply_text
from functions.assistant.tools import LAKE_QUERY_ROWS, LAKE_QUERY_SECONDS
from functions.middleware.auth import auth_headers
from functions.model_state.keys import key, model_key
from functions.model_state.replica import models_for
from functions.model_state.tasks import task_of

RECENT_KEPT = 50


def _finite(value: Any, digits: int = 4) -> Any:
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    return value


# Where each service is when the chat function runs in a cluster: the environment (the coelho-config ConfigMap)
# names it; on one machine the Settings' local ports do. (HTTP services by URL, the others by host:port.)
# LEARN_URL may hold `{domain}`: on a cluster learn-one is one Service per domain (coelho-learn-<domain>).
SERVICE_URL_ENV = {
    "learn": "LEARN_URL",
    "predict": "PREDICT_URL",
    "checkpoint": "CHECKPOINT_URL",
    "prometheus": "PROMETHEUS_URL",
    "sql": "SQL_URL",
    "lake": "LAKE_URL",
}
SERVICE_ADDRESS_ENV = {
    "broker": "BROKER_URL",
    "kafka": "KAFKA_BOOTSTRAP_SERVERS",
    "s3": "S3_ENDPOINT_URL",
    "dashboard": "DASHBOARD_URL",
}


class PlatformReader:
    """Every read the tools make. One per chat process; thread-safe.

    environ: where the services are (SERVICE_URL_ENV, SERVICE_ADDRESS_ENV, MLFLOW_TRACKING_URI); unset names fall
    back to the Settings' local addresses."""

    def __init__(
        self,
        settings: Settings,
        redis_url: str | None = None,
        mlflow_uri: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.environ = os.environ if environ is None else environ
        raw = redis.Redis.from_url(redis_url or settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
        self.redis = ReadOnlyRedis(raw)
        self.mlflow_uri = (mlflow_uri or self.environ.get("MLFLOW_TRACKING_URI") or settings.mlflow_uri).rstrip("/")
        self._replicas: dict[tuple[str, str], Any] = {}
        self._recent: dict[tuple[str, str], deque[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def service_url(self, name: str) -> str:
        """The base URL of an HTTP service: its environment variable (in a cluster), else the local port."""
        return (self.environ.get(SERVICE_URL_ENV.get(name, "")) or self.settings.url(name)).rstrip("/")

    def service_urls(self, name: str) -> dict[str, str]:
        """Where to reach every instance of an HTTP service: domain -> base URL for learn-one (LEARN_URL with
        `{domain}` replaced; a URL without it, or the local port, serves every domain), {name: URL} otherwise."""
        if name != "learn":
            return {name: self.service_url(name)}
        template = self.environ.get(SERVICE_URL_ENV["learn"]) or self.settings.url("learn")
        return {d: template.replace("{domain}", d).rstrip("/") for d in DOMAINS}

    def service_address(self, name: str) -> tuple[str, int]:
        """(host, port) of a service checked by a TCP connection: from its environment variable, else local."""
        raw = self.environ.get(SERVICE_ADDRESS_ENV.get(name, ""), "").split(",")[0].strip()
        if raw:
            parsed = urlsplit(raw if "://" in raw else f"tcp://{raw}")
            if parsed.hostname:
                return parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
        return self.settings.host, self.settings.ports[name]

    # --- which model ----------------------------------------------------------------------------
    def model_names(self, domain: str) -> list[str]:
        names = sorted(reply_text(n) or "" for n in self.redis.smembers(key(domain, "models")))
        configured = models_for(get_domain(domain))
        return [n for n in configured if n in names] + [n for n in names if n not in configured] or configured

    def live_model(self, domain: str) -> str:
        """The model the dashboard shows: the first configured model that has state in Redis."""
        for name in self.model_names(domain):
            if self.redis.exists(model_key(domain, name, "summary")) or self.redis.exists(
                model_key(domain, name, "snapshot")
            ):
                return name
        return self.model_names(domain)[0]

    def summary(self, domain: str, model: str) -> dict[str, Any] | None:
        raw = self.redis.hget(model_key(domain, model, "summary"), "json")
        return json.loads(raw) if raw else None

    # --- tools ------------------------------------------------------------------------------------
    def model_info(self, domain: str) -> dict[str, Any]:
        d = get_domain(domain)
        model = self.live_model(domain)
        summary = self.summary(domain, model)
        paused = reply_text(self.redis.get(key(domain, "paused_at")))
        head = int(reply_text(self.redis.get(key(domain, "seq"))) or 0)
        out: dict[str, Any] = {
            "domain": domain,
            "title": d.title,
            "task": d.task,
            "model": model,
            "models_running": self.model_names(domain),
            "training": "paused" if paused is not None else "live",
            "events_in_log": head,
        }
        if summary is None:
            out["state"] = "no live state in Redis yet: the model has learned nothing (or learn-one has not run)"
        else:
            metrics = summary.get("metrics", {})
            main = {m: _finite(metrics.get(m)) for m in d.main_metrics}
            others = {m: _finite(v) for m, v in metrics.items() if m not in main and m != "ClassificationReport"}
            out.update(
                events_learned=summary.get("events_learned"),
                log_position=summary.get("seq"),
                main_metrics=main,
                other_metrics=others,
                metric_meaning={m: d.metric_help[m] for m in main if m in d.metric_help},
                drifts_detected=summary.get("drifts"),
            )
            out.update({name: summary.get(name) for name in task_of(d).summary_counts})
        history = self.redis.zrevrange(model_key(domain, model, "history"), 0, 4)
        if history:
            out["recent_history_newest_first"] = [json.loads(h) for h in history]
        checkpoint = self.redis.get(model_key(domain, model, "checkpoint"))
        if checkpoint:
            out["last_checkpoint"] = json.loads(checkpoint)
        out["mlflow"] = self.registered_versions(domain)
        return out

    def registered_versions(self, domain: str, limit: int = 5) -> dict[str, Any]:
        name = f"coelho-{domain}"
        try:
            response = requests.get(
                f"{self.mlflow_uri}/api/2.0/mlflow/model-versions/search",
                params={"filter": f"name='{name}'", "max_results": "200"},
                timeout=HTTP_TIMEOUT,
            )
            if response.status_code != 200:
                return {"registered_model": name, "error": f"MLflow answered {response.status_code}"}
            versions = response.json().get("model_versions", [])
            aliases: dict[str, list[str]] = {}
            model = requests.get(
                f"{self.mlflow_uri}/api/2.0/mlflow/registered-models/get", params={"name": name}, timeout=HTTP_TIMEOUT
            )
            if model.status_code == 200:
                for alias in model.json().get("registered_model", {}).get("aliases", []):
                    aliases.setdefault(str(alias.get("version")), []).append(alias.get("alias"))
        except requests.RequestException as exc:
            return {"registered_model": name, "error": f"MLflow unreachable: {type(exc).__name__}"}
        versions.sort(key=lambda v: int(v.get("version", 0)), reverse=True)
        shown: list[dict[str, Any]] = []
        for v in versions[:limit]:
            tags = {t["key"]: t["value"] for t in v.get("tags", [])}
            shown.append(
                {
                    "version": int(v["version"]),
                    "aliases": aliases.get(str(v["version"]), []),
                    "model": tags.get("model"),
                    "events_learned": int(tags["events_learned"]) if "events_learned" in tags else None,
                    "created_ms": v.get("creation_timestamp"),
                    "run_id": v.get("run_id"),
                    "metrics_at_checkpoint": self._run_metrics(v.get("run_id"))
                    if len(shown) < 2
                    else "(ask for fewer versions)",
                }
            )
        return {"registered_model": name, "versions_total": len(versions), "latest_versions": shown}

    def _run_metrics(self, run_id: str | None) -> dict[str, Any]:
        if not run_id:
            return {}
        try:
            response = requests.get(
                f"{self.mlflow_uri}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=HTTP_TIMEOUT
            )
            metrics = (
                response.json().get("run", {}).get("data", {}).get("metrics", []) if response.status_code == 200 else []
            )
        except (requests.RequestException, ValueError):
            return {}
        return {m["key"]: _finite(m["value"]) for m in metrics[:20]}

    def cluster_analytics(self, cluster: int | None = None, feature: str | None = None) -> dict[str, Any]:
        model = self.live_model("ecci")
        summary = self.summary("ecci", model)
        if summary is None:
            return {"error": "no ECCI model state in Redis yet: no interaction has been learned"}
        clusters: dict[str, Any] = summary.get("clusters", {})
        total = sum(int(c.get("samples", 0)) for c in clusters.values()) or 1
        out: dict[str, Any] = {
            "model": model,
            "events_learned": summary.get("events_learned"),
            "n_clusters": summary.get("n_clusters"),
            "n_micro_clusters": summary.get("n_micro_clusters"),
            "samples_per_cluster": {cid: c.get("samples", 0) for cid, c in clusters.items()},
            "share_per_cluster": {cid: round(int(c.get("samples", 0)) / total, 3) for cid, c in clusters.items()},
        }
        chosen = {cid: c for cid, c in clusters.items() if cluster is None or cid == str(cluster)}
        if cluster is not None and not chosen:
            out["note"] = f"cluster {cluster} has no profile (known: {', '.join(clusters) or 'none'})"
        profiles = {}
        for cid, profile in chosen.items():
            profiles[cid] = {k: v for k, v in profile.items() if feature is None or k in (feature, "samples")}
        out["profiles"] = profiles
        out["separating_features"] = self._separating_features(model, cluster)
        return out

    def _separating_features(self, model: str, only: int | None) -> Any:
        """Per macro-cluster centre: the standardised features furthest from 0 (the scaler's mean = average event)."""
        replica = self._replica("ecci", model)
        from functions.assistant.explain import _unwrap

        with replica.lock:
            _, estimator, _ = _unwrap(replica.state.model)
            centres = getattr(estimator, "centers", None) if replica.state.events_learned else None
            if not centres:
                return "no macro-clusters yet"
            out = {}
            for cid, centre in centres.items():
                if only is not None and cid != only:
                    continue
                top = sorted(centre.items(), key=lambda kv: abs(kv[1]), reverse=True)[:4]
                out[str(cid)] = {name: round(float(v), 3) for name, v in top}
        return {"unit": "standard deviations from the average interaction", "centres": out}

    def recent_predictions(self, domain: str, limit: int = 5) -> dict[str, Any]:
        model = self.live_model(domain)
        replica = self._replica(domain, model)
        recent = list(self._recent[(domain, model)])[-limit:][::-1]
        d = get_domain(domain)
        return {
            "domain": domain,
            "model": model,
            "what": "the model's test-then-train predictions: made on each event before learning it, with the true outcome",
            "log_position": replica.state.seq,
            "predictions_newest_first": recent,
            "note": None if recent else f"no {d.name} events learned since this assistant started following the log",
        }

    def explain_prediction(self, domain: str, event: Mapping[str, Any]) -> dict[str, Any]:
        d = get_domain(domain)
        payload = {k: v for k, v in event.items() if k != d.target}
        try:
            clean = d.validate(payload, purpose="prediction")
        except ValidationError as exc:
            return {"error": f"the event is not valid for {domain}: {json.dumps(exc.errors)[:500]}"}
        model = self.live_model(domain)
        replica = self._replica(domain, model)
        x = d.features(clean)
        with replica.lock:
            state = replica.state
            if state.events_learned == 0:
                return {"error": f"the {domain} model has learned nothing yet: there is nothing to explain"}
            answer = state.task.reply(state, state.predict_one(x))  # the prediction fields of predict-one's reply
            explanation = explain(state.model, x)
            seq, learned = state.seq, state.events_learned
        result: dict[str, Any] = {"domain": domain, "model": model, "log_position": seq, "events_learned": learned}
        result.update({name: _finite(value, 6) for name, value in answer.items()})
        result["explanation"] = explanation
        return result

    def describe_domain(self, domain: str) -> dict[str, Any]:
        d = get_domain(domain)
        fields = []
        for path, f in d.leaf_fields():
            item: dict[str, Any] = {"field": path, "type": f.type, "role": f.role}
            for name in ("unit", "minimum", "maximum"):
                if getattr(f, name, None) is not None:
                    item[name] = getattr(f, name)
            if f.choices:
                item["choices"] = list(f.choices)
            fields.append(item)
        return {
            "domain": d.name,
            "title": d.title,
            "task": d.task,
            "description": d.description,
            "target": d.target,
            "entity_key": d.key_field,
            "models": list(d.model_factories),
            "default_model": d.default_model,
            "fields": fields,
            "metric_meaning": dict(d.metric_help),
        }

    def query_lake(self, query: str, limit: int = 50) -> dict[str, Any]:
        """One read-only SQL query over the lake, run by the sql function with the assistant's tighter limits
        (at most LAKE_QUERY_ROWS rows and LAKE_QUERY_SECONDS seconds); a refused query comes back as its reason."""
        body = {"query": query, "limit": min(limit, LAKE_QUERY_ROWS), "timeout_s": LAKE_QUERY_SECONDS}
        url = f"{self.service_url('sql')}/sql"
        try:
            response = requests.post(url, json=body, timeout=LAKE_QUERY_SECONDS + 5, headers=auth_headers())
        except requests.RequestException as exc:
            return {
                "error": f"the sql function is not reachable ({type(exc).__name__}): the lake cannot be queried now"
            }
        try:
            answer = response.json()
        except ValueError:
            return {"error": f"the sql function answered HTTP {response.status_code} without JSON"}
        if response.status_code != 200:
            reason = answer.get("message") if answer.get("fields") else answer.get("error")
            return {"error": f"query refused (HTTP {response.status_code}): {reason}"}
        return {name: answer.get(name) for name in ("columns", "rows", "row_count", "truncated", "versions")}

    def platform_health(self) -> dict[str, Any]:
        """Services, domains and request errors (functions/assistant/health.py)."""
        return health.platform_health(self)

    # --- the live model, followed read-only -------------------------------------------------------
    def _replica(self, domain: str, model: str) -> Any:
        from functions.model_state.replica import ModelReplica

        with self._lock:
            replica = self._replicas.get((domain, model))
            if replica is None:
                replica = ModelReplica(self.redis, get_domain(domain), model, role="follower")  # type: ignore[arg-type]
                self._replicas[(domain, model)] = replica
                self._recent[(domain, model)] = deque(maxlen=RECENT_KEPT)
        self._follow(replica, self._recent[(domain, model)])
        return replica

    def _follow(self, replica: Any, recent: deque[dict[str, Any]]) -> None:
        """Bring the replica to the end of the log (up to a pause), recording each test-then-train prediction."""

        def record(entry: Any, outcome: Any) -> None:
            if entry.kind != "label":
                state = replica.state
                recent.append(state.task.prediction_row(state, entry.event, outcome.prediction))

        if replica.state.seq == 0:  # cold: start from the latest snapshot, then replay the log after it
            replica.load_snapshot()
        replica.catch_up(on_learned=record)
