"""People's preferences between two models' answers: the dashboard's prefer-A/B buttons
(docs/adr/0082-ab-testing.md), counted in Redis (`preferences`, keys in functions/model_state/keys.py)."""

from __future__ import annotations

from typing import Any

from eventing.domain import Domain
from eventing.schema import ValidationError
from functions.model_state.keys import as_text, key


def record_preference(client: Any, domain: Domain, a: str, b: str, choice: str) -> dict[str, Any]:
    """Count one person's preference between the answers of models `a` and `b` (choice: a, b or tie)."""
    if choice not in ("a", "b", "tie"):
        raise ValidationError({"choice": "expected a, b or tie"})
    total = client.hincrby(key(domain.name, "preferences"), f"{a}|{b}|{choice}", 1)
    return {"domain": domain.name, "a": a, "b": b, "choice": choice, "count": int(total)}


def preferences(client: Any, domain: Domain) -> dict[str, dict[str, int]]:
    """Counts per pair of models "a|b": {a, b, tie}."""
    out: dict[str, dict[str, int]] = {}
    for name, value in client.hgetall(key(domain.name, "preferences")).items():
        a, b, choice = as_text(name).split("|")
        out.setdefault(f"{a}|{b}", {"a": 0, "b": 0, "tie": 0})[choice] = int(value)
    return out
