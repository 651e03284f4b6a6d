"""The Redis key layout of the model state, and the connection to it. Imports neither River nor the domains, so
the dashboard and the benchmarks read the same keys the functions write.

Keys (prefix coelho:<domain>:):
    seq, log (stream, entry id "<seq>-0", fields k=kind d=json t=ms p=previous chain h=chain), chain (the hash
    chain's value after the last entry), dedup:<key> (CloudEvent and event ids, with a TTL), kafka:<topic>:<partition>
    (zset: the partition's offset mark), paused_at, models (set),
    model:<name>:snapshot (hash seq, blob: signed, events_learned, written_ms), model:<name>:summary (hash seq, json),
    model:<name>:history (zset score=seq, member=json), model:<name>:drift (zset), model:<name>:checkpoint (json),
    model:<name>:restored_from (the MLflow version a model was restored from)

A/B testing (functions/model_state/ab.py, ab_outcomes.py, ab_served.py, ab_preferences.py;
docs/adr/0082-ab-testing.md), same prefix:
    live (set: the models learn-one and predict-one run; seeded once from COELHO_MODEL_<DOMAIN>),
    specs (hash model -> json {params, start_seq, added_ms}), aliases (hash champion|challenger -> json
    {model, version, seq}), champions (list: earlier champions, newest first, for rollback), split (json
    {"arms": [[arm, weight], ...]}), model:<name>:outcomes (zset score=seq: the model's test-then-train answer and
    the truth per scored event, the last OUTCOMES_KEEP), served:<event id> (hash "model|version|mode" -> the
    answer predict-one served), served_ids (list bounding them), live_scores (hash "model|version|mode|stat" ->
    sum: served answers scored against their label), preferences (hash "page|a|b|choice" -> count; a and b are
    "model@live" or "model@vN")

    >>> key("tfd", "seq")
    'coelho:tfd:seq'
    >>> model_key("tfd", "logistic_regression", "summary")
    'coelho:tfd:model:logistic_regression:summary'
    >>> log_behind(b"120", "100"), log_behind(None, 5)
    (20, 0)
    >>> as_text(b"champion"), as_text("logreg")
    ('champion', 'logreg')
"""

from __future__ import annotations

import os
from typing import Any

import redis


def key(domain: str, *parts: str) -> str:
    """A key of a domain's model state."""
    return ":".join(("coelho", domain, *parts))


def model_key(domain: str, model: str, part: str) -> str:
    """A key of one model of a domain."""
    return key(domain, "model", model, part)


def as_text(value: Any) -> str:
    """A Redis reply (bytes from a client without decode_responses, or str) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def log_behind(head: Any, applied: Any) -> int:
    """Entries committed to a domain's log (its `seq`, the head) that a model has not applied yet (its position,
    e.g. the summary's `seq`): what a paused or slow model owes. Raw Redis values (bytes, None) are accepted."""
    return max(0, int(head or 0) - int(applied or 0))


def connect(url: str | None = None) -> redis.Redis:
    return redis.Redis.from_url(
        url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=10,
    )
