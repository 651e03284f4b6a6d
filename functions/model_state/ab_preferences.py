"""People's preferences between two answers: the dashboard's prefer-A/B buttons (docs/adr/0082-ab-testing.md),
counted in Redis (`preferences`, keys in functions/model_state/keys.py).

Each count names the page it was given on and the two versions compared: a live model (`logreg@live`) or a
registered version, frozen (`logreg@v3`). A field of the hash is `page|a|b|choice`; counts written before pages and
versions were recorded (`a|b|choice`) are read with an empty page.

    >>> arm_label("logreg", None), arm_label("logreg", 3)
    ('logreg@live', 'logreg@v3')
    >>> parse_field("tfd|logreg@live|logreg@v3|a"), parse_field("logreg_rus|logreg|tie")
    (('tfd', 'logreg@live', 'logreg@v3', 'a'), ('', 'logreg_rus', 'logreg', 'tie'))
    >>> totals({"tfd|x@live|y@v2": {"a": 3, "b": 1, "tie": 1}})["y@v2"]
    {'shown': 5, 'preferred': 1, 'tie': 1, 'other': 3}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventing.domain import Domain
from eventing.schema import ValidationError
from functions.model_state.keys import as_text, key

CHOICES = ("a", "b", "tie")


def arm_label(model: str, version: int | str | None) -> str:
    """How one side of a comparison is named: the model and its version (`live` for the learning model)."""
    return f"{model}@live" if version in (None, "", "live") else f"{model}@v{version}"


def parse_field(name: str) -> tuple[str, str, str, str]:
    """(page, a, b, choice) of a field of the preferences hash."""
    parts = name.split("|")
    if len(parts) == 3:
        return ("", parts[0], parts[1], parts[2])
    page, a, b, choice = parts[-4:]
    return page, a, b, choice


def record_preference(
    client: Any, domain: Domain, a: str, b: str, choice: str, page: str | None = None
) -> dict[str, Any]:
    """Count one person's preference between the answers of `a` and `b` (arm labels: model@live or model@vN)
    given on dashboard page `page` (default: the domain's page); choice: a, b or tie."""
    if choice not in CHOICES:
        raise ValidationError({"choice": "expected a, b or tie"})
    errors = {side: "must not contain '|'" for side, value in (("a", a), ("b", b)) if not value or "|" in value}
    page = page or domain.name
    if "|" in page:
        errors["page"] = "must not contain '|'"
    if errors:
        raise ValidationError(errors)
    total = client.hincrby(key(domain.name, "preferences"), f"{page}|{a}|{b}|{choice}", 1)
    return {"domain": domain.name, "page": page, "a": a, "b": b, "choice": choice, "count": int(total)}


def preferences(client: Any, domain: Domain) -> dict[str, dict[str, int]]:
    """Counts per page and pair of versions, "page|a|b": {a, b, tie}."""
    out: dict[str, dict[str, int]] = {}
    for name, value in client.hgetall(key(domain.name, "preferences")).items():
        page, a, b, choice = parse_field(as_text(name))
        out.setdefault(f"{page}|{a}|{b}", dict.fromkeys(CHOICES, 0))[choice] = int(value)
    return out


def totals(counts: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """Per version (arm label), over every page and pair: how often its answer was shown beside another one and
    how often it was preferred, tied or passed over for the other."""
    out: dict[str, dict[str, int]] = {}
    for pair, c in counts.items():
        _, a, b = pair.split("|")
        for arm, mine, theirs in ((a, "a", "b"), (b, "b", "a")):
            row = out.setdefault(arm, {"shown": 0, "preferred": 0, "tie": 0, "other": 0})
            row["shown"] += c.get("a", 0) + c.get("b", 0) + c.get("tie", 0)
            row["preferred"] += c.get(mine, 0)
            row["tie"] += c.get("tie", 0)
            row["other"] += c.get(theirs, 0)
    return out
