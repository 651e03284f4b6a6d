"""Read-only access to live model state for the dashboard, plus the two controls the pages own.

Model state, metric history, checkpoints and the pause flag belong to the functions (functions/); this module
only adapts their Python API to what the pages show (`ui.live.DomainLive`). The producer controls
(`coelho:producer:<domain>:rate` and `:enabled`) are the platform-wide convention the producers poll.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import redis

from coelho.settings import Settings
from functions.model_state.keys import key, log_behind
from producers.controls import enabled_key, rate_key, running_key, running_producers

if TYPE_CHECKING:
    from ui.live import DomainLive


class StateUnavailable(RuntimeError):
    """Redis cannot be reached: the pages show their last values and the banner names Redis."""


def redis_client(settings: Settings, timeout: float = 0.5) -> redis.Redis:
    return redis.Redis.from_url(
        settings.redis_url, socket_timeout=timeout, socket_connect_timeout=0.5, decode_responses=False
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


# --- producer controls ---------------------------------------------------------------------------------
def producer_key(domain: str, what: str) -> str:
    return rate_key(domain) if what == "rate" else enabled_key(domain)


def read_producer(client: redis.Redis, domain: str) -> tuple[bool | None, float | None]:
    enabled, rate = client.mget(producer_key(domain, "enabled"), producer_key(domain, "rate"))
    enabled_text, rate_text = _text(enabled), _text(rate)
    try:
        rate_value = float(rate_text) if rate_text is not None else None
    except ValueError:
        rate_value = None
    return (None if enabled_text is None else enabled_text == "1"), rate_value


def set_producer(settings: Settings, domain: str, enabled: bool | None = None, rate: float | None = None) -> None:
    """Start/stop a producer or change its rate (events/s); producers poll these keys."""
    client = redis_client(settings)
    try:
        if enabled is not None:
            client.set(producer_key(domain, "enabled"), "1" if enabled else "0")
        if rate is not None:
            client.set(producer_key(domain, "rate"), repr(float(rate)))
    except redis.RedisError as err:
        raise StateUnavailable(str(err)) from err


# --- the log's recent events ---------------------------------------------------------------------------
def recent_transactions(client: redis.Redis, domain: str = "tfd", count: int = 300) -> list[dict[str, Any]]:
    """Where the domain's latest `count` logged transactions happened (lat, lon), oldest first: what the fraud page's
    map draws. Each has its label `is_fraud` (None while it has not arrived: a record logged without it, whose `label`
    entry is not logged yet), `amount`, and `event`, the clean event as logged (what the champion scores for the
    map's colours). Reads the last 2 x `count` entries: delayed labels take an entry each. Raises StateUnavailable
    when Redis is down."""
    from eventing.domains import get_domain

    spec = get_domain(domain)
    try:
        entries: Any = client.xrevrange(key(domain, "log"), count=2 * count)
    except redis.RedisError as err:
        raise StateUnavailable(str(err)) from err
    out: list[dict[str, Any]] = []
    by_id: dict[str, dict[str, Any]] = {}
    for _entry_id, fields in reversed(entries):
        kind = fields.get(b"k")
        data = _json(fields.get(b"d"))
        if not isinstance(data, dict):
            continue
        if kind == b"label":  # a delayed label: it marks its transaction, if that is on the map
            shown = by_id.get(str(data.get(spec.id_field)))
            if shown is not None and spec.target is not None:
                shown["is_fraud"] = data.get(spec.target)
            continue
        if kind not in (b"record", b"unlabeled"):
            continue
        location = data.get("location")
        if not isinstance(location, dict) or location.get("lat") is None or location.get("lon") is None:
            continue
        row = {
            "lat": float(location["lat"]),
            "lon": float(location["lon"]),
            "is_fraud": data.get(spec.target) if spec.target else None,
            "amount": data.get("amount"),
            "event": data,
        }
        out.append(row)
        by_id[str(data.get(spec.id_field))] = row
    return out[-count:]


# --- model state ---------------------------------------------------------------------------------------
def model_names(client: redis.Redis, domain: str) -> list[str]:
    """Models the deployment runs for `domain`: those that published state, else the configured ones."""
    known = sorted(_text(m) or "" for m in client.smembers(key(domain, "models")))  # type: ignore[union-attr]
    if known:
        return known
    try:
        from eventing.domains import get_domain
        from functions.model_state.replica import models_for

        return models_for(get_domain(domain))
    except Exception:
        from eventing.domains import get_domain

        return [get_domain(domain).default_model]


def _json(value: Any) -> Any:
    text = _text(value)
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def read_domain(client: redis.Redis, domain: str, model: str | None = None) -> DomainLive:
    """What the pages show about `domain` now. Raises StateUnavailable when Redis is down.

    Reads what learn-one publishes (functions/model_state/replica.py): model:<name>:summary (hash seq, json),
    model:<name>:history and :drift (sorted sets of JSON points), model:<name>:checkpoint (JSON), paused_at, and
    the log head (seq) for how far the model is behind its log.
    """
    from ui.live import DomainLive

    live = DomainLive(domain)
    try:
        live.producer_enabled, live.producer_rate = read_producer(client, domain)
        names = model_names(client, domain)
        name = model or names[0]
        live.model = name
        pipe = client.pipeline(transaction=False)
        pipe.hget(key(domain, "model", name, "summary"), "json")
        pipe.zrange(key(domain, "model", name, "history"), 0, -1)
        pipe.zrange(key(domain, "model", name, "drift"), 0, -1)
        pipe.get(key(domain, "model", name, "checkpoint"))
        pipe.get(key(domain, "paused_at"))
        pipe.get(key(domain, "model", name, "restored_from"))
        pipe.get(key(domain, "seq"))
        pipe.hgetall(running_key(domain))
        summary_raw, history_raw, drift_raw, checkpoint_raw, paused_raw, restored, head, running = pipe.execute()
    except redis.RedisError as err:
        raise StateUnavailable(str(err)) from err
    live.paused = paused_raw is not None
    live.producers = running_producers(running or {})
    live.log_head = int(head) if head is not None else None
    summary = _json(summary_raw)
    if isinstance(summary, dict):
        live.available = True
        live.events_learned = int(summary.get("events_learned") or 0)
        live.behind = log_behind(head, summary.get("seq"))
        live.metrics = dict(summary.get("metrics") or {})
        live.clusters = dict(summary.get("clusters") or {})
        live.n_clusters = summary.get("n_clusters")
        live.n_micro_clusters = summary.get("n_micro_clusters")
        live.last_event_ms = summary.get("last_event_ms")
    history: dict[str, list[tuple[float, float]]] = {}
    for raw in history_raw or []:
        point = _json(raw)
        if not isinstance(point, dict):
            continue
        x = point.get("events_learned", point.get("seq"))
        for metric, value in point.items():
            if metric in ("seq", "t_ms", "events_learned") or not isinstance(value, int | float) or x is None:
                continue
            history.setdefault(metric, []).append((float(x), float(value)))
    live.history = history
    markers = [_json(r) for r in drift_raw or []]
    live.drifts_at = [float(p.get("events_learned") or p.get("seq") or 0) for p in markers if isinstance(p, dict)]
    checkpoint = _json(checkpoint_raw)
    live.last_checkpoint = checkpoint if isinstance(checkpoint, dict) else None
    if live.last_checkpoint:
        version = live.last_checkpoint.get("version") or live.last_checkpoint.get("model_version")
        live.version = str(version) if version is not None else None
    elif restored is not None:
        live.version = _text(restored)
    live.models = read_models(client, domain, names)
    return live


def _version(checkpoint: Any, restored: Any) -> str | None:
    if isinstance(checkpoint, dict):
        version = checkpoint.get("version") or checkpoint.get("model_version")
        if version is not None:
            return str(version)
    return _text(restored)


def read_models(client: redis.Redis, domain: str, names: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per model of `domain` (all learn side by side): name, version, events learned, main metric.

    `{"name", "version", "events_learned", "metric", "value", "available"}`; the main metric is the domain's
    first `main_metrics`. One pipelined round trip for every model. Raises StateUnavailable when Redis is down.
    """
    from eventing.domains import get_domain

    metric = (get_domain(domain).main_metrics or [""])[0]
    try:
        names = names if names is not None else model_names(client, domain)
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.hget(key(domain, "model", name, "summary"), "json")
            pipe.get(key(domain, "model", name, "checkpoint"))
            pipe.get(key(domain, "model", name, "restored_from"))
        raw = pipe.execute()
    except redis.RedisError as err:
        raise StateUnavailable(str(err)) from err
    rows = []
    for i, name in enumerate(names):
        summary, checkpoint, restored = _json(raw[3 * i]), _json(raw[3 * i + 1]), raw[3 * i + 2]
        summary = summary if isinstance(summary, dict) else {}
        rows.append(
            {
                "name": name,
                "version": _version(checkpoint, restored),
                "events_learned": int(summary.get("events_learned") or 0) if summary else None,
                "metric": metric,
                "value": (summary.get("metrics") or {}).get(metric) if summary else None,
                "available": bool(summary),
            }
        )
    return rows


def set_training(settings: Settings, domain: str, paused: bool) -> dict[str, Any]:
    """Pause or resume learning for `domain` through learn-one's own API (no event is lost)."""
    from functions.model_state.event_log import set_training as functions_set_training

    client = redis_client(settings)
    try:
        return dict(functions_set_training(client, domain, "pause" if paused else "resume"))
    except redis.RedisError as err:
        raise StateUnavailable(str(err)) from err


# --- A/B testing (functions/model_state/ab.py, ab_outcomes.py, ab_served.py, ab_preferences.py) ---------
def ab_state(settings: Settings, domain: str) -> dict[str, Any]:
    """The comparison of the domain's live models, their aliases, the split, live-traffic scores and preferences."""
    from eventing.domains import get_domain
    from functions.model_state import ab, ab_outcomes, ab_preferences, ab_served

    d = get_domain(domain)
    client = redis_client(settings)
    try:
        out = ab_outcomes.compare(client, d)
        out["aliases"] = ab.aliases(client, d)
        out["split"] = ab.read_split(client.get(key(domain, "split"))) or None
        out["live_scores"] = ab_served.live_scores(client, d)
        out["preferences"] = ab_preferences.preferences(client, d)
        previous = client.lindex(key(domain, "champions"), 0)
        out["previous_champion"] = json.loads(previous) if previous else None
        return out
    except redis.RedisError as err:
        raise StateUnavailable(str(err)) from err


def ab_control(settings: Settings, domain: str, data: dict[str, Any]) -> dict[str, Any]:
    """Promote or roll back (or any model.control action), as `coelho models` does (the aliases also in MLflow when
    MLFLOW_TRACKING_URI is set, as it is for the platform's dashboard)."""
    from eventing.domains import get_domain
    from functions.model_state import ab

    try:
        return ab.control(redis_client(settings), get_domain(domain), data)
    except redis.RedisError as err:
        raise StateUnavailable(str(err)) from err


def ab_curves(settings: Settings, domain: str, models: list[str], metric: str) -> dict[str, list[tuple[float, float]]]:
    """`metric` of each of `models` over the domain's log position (seq): the same event axis for models that
    started at different times (model:<name>:history, points every ~100 events)."""
    client = redis_client(settings)
    try:
        pipe = client.pipeline(transaction=False)
        for name in models:
            pipe.zrange(key(domain, "model", name, "history"), 0, -1, withscores=True)
        raw = pipe.execute()
    except redis.RedisError as err:
        raise StateUnavailable(str(err)) from err
    curves: dict[str, list[tuple[float, float]]] = {}
    for name, points in zip(models, raw, strict=True):
        line = []
        for member, score in points:
            point = _json(member)
            if isinstance(point, dict) and isinstance(point.get(metric), int | float):
                line.append((float(point.get("seq", score)), float(point[metric])))
        curves[name] = line
    return curves


def record_preference(
    settings: Settings, domain: str, a: str, b: str, choice: str, page: str | None = None
) -> dict[str, Any]:
    """Count a person's preference between two answers (a and b: model@live or model@vN) on dashboard page `page`,
    and announce it (`preference.recorded`, best effort, in the background)."""
    import contextlib
    import threading

    from eventing.domains import get_domain
    from functions.model_state import ab_preferences

    d = get_domain(domain)
    try:
        result = ab_preferences.record_preference(redis_client(settings), d, a, b, choice, page)
    except redis.RedisError as err:
        raise StateUnavailable(str(err)) from err

    def announce() -> None:
        from functions.middleware.events import make_event, post_event
        from ui.environment import broker_ingress

        event = make_event(d.type("preference.recorded"), d.source("dashboard"), result, domain=d.name)
        with contextlib.suppress(Exception):  # the count is kept; the event is a courtesy
            post_event(broker_ingress(settings), event)

    threading.Thread(target=announce, name="coelho-preference", daemon=True).start()
    return result
