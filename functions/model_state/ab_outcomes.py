"""Paired outcomes of a domain's live models, and their comparison (docs/adr/0082-ab-testing.md).

Each learner keeps its test-then-train answer and the truth per scored event, by log position, in
`model:<name>:outcomes` (keys in functions/model_state/keys.py), so two models are compared on the same events
(functions/model_state/comparison.py). The live models and the champion come from functions/model_state/ab.py.

    >>> from eventing.domains import ETA
    >>> outcome_member(ETA, 7, {"simulated_actual_travel_time_seconds": 60}, 58.5)
    '[7, 60.0, 58.5]'
    >>> outcome_member(ETA, 8, {}, 58.5) is None
    True
    >>> _finite({"p": float("nan"), "d": [1.0, float("inf")]})
    {'p': None, 'd': [1.0, None]}
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from eventing.domain import Domain
from functions.model_state.ab import champion, live_models
from functions.model_state.keys import model_key
from functions.model_state.task_scores import scores_of

OUTCOMES_KEEP = 5000  # paired outcomes kept per model


def outcome_member(domain: Domain, seq: int, event: Mapping[str, Any], prediction: Any) -> str | None:
    """One scored event of one model, as stored: [seq, truth, answer] (classification: truth 0/1, answer the
    probability; regression: seconds), clustering [seq, cluster, features]."""
    scores = scores_of(domain.task)
    truth = event.get(domain.target) if domain.target else None
    features = list(domain.features(event).values()) if domain.target is None and prediction is not None else []
    member = scores.outcome(seq, truth, prediction, features)
    return None if member is None else json.dumps(member)


def record_outcomes(client: Any, domain: Domain, model: str, members: Sequence[tuple[int, str]]) -> None:
    """Keep the last OUTCOMES_KEEP (idempotent: every learner replica writes the same members)."""
    if not members:
        return
    name = model_key(domain.name, model, "outcomes")
    pipe = client.pipeline(transaction=False)
    pipe.zadd(name, {m: s for s, m in members})
    pipe.zremrangebyrank(name, 0, -(OUTCOMES_KEEP + 1))
    pipe.execute()


def outcomes(client: Any, domain: Domain, model: str, count: int = OUTCOMES_KEEP) -> dict[int, list[Any]]:
    """seq -> [truth or cluster, answer or features] of the model's last `count` scored events."""
    raw = client.zrange(model_key(domain.name, model, "outcomes"), -count, -1)
    out = {}
    for member in raw:
        seq, a, b = json.loads(member)
        out[int(seq)] = [a, b]
    return out


def compare(
    client: Any,
    domain: Domain,
    count: int = OUTCOMES_KEEP,
    seed: bool = True,
    frozen: Mapping[str, Callable[[Mapping[int, Sequence[Any]]], dict[int, list[Any]]]] | None = None,
) -> dict[str, Any]:
    """Every pair of the domain's live models compared on the same log positions (the last `count` each holds),
    champion first: functions/model_state/comparison.py. Only reads with seed False. `frozen`: name -> a function
    giving a frozen model's outcomes on the champion's positions (a batch study's model,
    functions/batch/serving.py), compared with every live model after the live pairs."""
    from functions.model_state.comparison import compare_outcomes
    from functions.model_state.replica import models_for

    names = [s.name for s in live_models(client, domain, models_for(domain), seed=seed)]
    first = champion(client, domain, names)["model"]
    names = sorted(names, key=lambda n: n != first)
    held = {n: outcomes(client, domain, n, count) for n in names}
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            result = compare_outcomes(domain.task, held[a], held[b])
            pairs.append({"a": a, "b": b, **result})
    frozen_names = []
    for name, answer in (frozen or {}).items():
        found = answer(held[first]) if names else {}
        frozen_names.append(name)
        for a in names:
            pairs.append({"a": a, "b": name, "frozen": True, **compare_outcomes(domain.task, held[a], found)})
    report: dict[str, Any] = _finite(
        {
            "domain": domain.name,
            "task": domain.task,
            "champion": first,
            "models": names,
            "frozen": frozen_names,
            "pairs": pairs,
        }
    )
    return report


def _finite(value: Any) -> Any:
    """JSON-safe: NaN and infinities (an interval from too few events) become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
