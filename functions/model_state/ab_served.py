"""Served answers of a domain and their live scores (docs/adr/0082-ab-testing.md).

predict-one keeps what it answered for a request carrying an event id (`served:<id>`, keys in
functions/model_state/keys.py); when the event's label is learned, each served (model, version, live|frozen) is
scored on that live traffic (`live_scores`).

    >>> served_field("logreg", None, frozen=False), served_field("logreg", 3, frozen=True)
    ('logreg|-|live', 'logreg|3|frozen')
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from eventing.domain import Domain
from functions.model_state.keys import as_text, key
from functions.model_state.task_scores import scores_of

SERVED_KEEP = 20_000  # served answers awaiting a label, per domain
SERVED_TTL_S = 86_400  # and for at most a day
LOG_LOSS_CLIP = 1e-12

_TAKE = """
local out = {}
for i = 1, #KEYS do
  local found = redis.call('HGETALL', KEYS[i])
  if #found > 0 then
    redis.call('DEL', KEYS[i])
    table.insert(out, i)
    table.insert(out, found)
  end
end
return out
"""


def served_field(model: str, version: int | None, frozen: bool) -> str:
    return f"{model}|{'-' if version is None else version}|{'frozen' if frozen else 'live'}"


def record_served(client: Any, domain_name: str, served: Sequence[tuple[str, str, Any]]) -> None:
    """Keep predict-one's answers [(event id, served_field, raw answer)] until their label (bounded, expiring)."""
    if not served:
        return
    pipe = client.pipeline(transaction=False)
    ids_key = key(domain_name, "served_ids")
    for event_id, fieldname, raw in served:
        name = key(domain_name, "served", event_id)
        pipe.hset(name, fieldname, json.dumps(raw))
        pipe.expire(name, SERVED_TTL_S)
        pipe.rpush(ids_key, event_id)
    pipe.llen(ids_key)
    length = pipe.execute()[-1]
    excess = int(length) - SERVED_KEEP
    if excess > 0:
        old = client.lpop(ids_key, excess) or []
        if old:
            client.delete(*[key(domain_name, "served", as_text(i)) for i in old])


class ServedScorer:
    """Scores served answers when their label is learned: takes each event id's served answers atomically (so
    several learner replicas score each once) and adds to `live_scores` per (model, version, live|frozen)."""

    def __init__(self, client: Any) -> None:
        self.redis = client
        self._take = client.register_script(_TAKE)

    def score(self, domain: Domain, labelled: Sequence[tuple[str, Any]]) -> int:
        """labelled: [(event id, truth)]; returns how many served answers were scored."""
        if not labelled or domain.target is None:
            return 0
        keys = [key(domain.name, "served", str(i)) for i, _ in labelled]
        found = self._take(keys=keys)
        if not found:
            return 0
        sums: dict[str, float] = {}
        scored = 0
        for index, pairs in zip(found[0::2], found[1::2], strict=True):
            truth = labelled[int(index) - 1][1]
            for fieldname, raw in zip(pairs[0::2], pairs[1::2], strict=True):
                answer = json.loads(raw)
                prefix = as_text(fieldname)
                for stat, value in scores_of(domain.task).served_stats(truth, answer).items():
                    sums[f"{prefix}|{stat}"] = sums.get(f"{prefix}|{stat}", 0.0) + value
                scored += 1
        pipe = self.redis.pipeline(transaction=False)
        for name, value in sums.items():
            pipe.hincrbyfloat(key(domain.name, "live_scores"), name, value)
        pipe.execute()
        return scored


def live_scores(client: Any, domain: Domain) -> list[dict[str, Any]]:
    """Per served (model, version, mode): answers scored against their label, with accuracy and log loss
    (classification) or MAE and RMSE (regression)."""
    rows: dict[tuple[str, str, str], dict[str, float]] = {}
    for name, value in client.hgetall(key(domain.name, "live_scores")).items():
        model, version, mode, stat = as_text(name).split("|")
        rows.setdefault((model, version, mode), {})[stat] = float(value)
    out = []
    for (model, version, mode), stats in sorted(rows.items()):
        n = stats.get("n", 0.0)
        row: dict[str, Any] = {
            "model": model,
            "version": None if version == "-" else int(version),
            "mode": mode,
            "scored": int(n),
        }
        if n:
            row.update(scores_of(domain.task).live_row(stats, n))
        out.append(row)
    return out
