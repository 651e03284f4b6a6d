"""A/B testing of a domain's models: which models are live, which one is the champion, and how traffic is split
(docs/adr/0082-ab-testing.md). What each model and each served version scored is kept beside it:
functions/model_state/ab_outcomes.py (paired outcomes and `compare`), functions/model_state/ab_served.py (served
answers and `live_scores`), functions/model_state/ab_preferences.py (the dashboard's prefer-A/B counts).

Everything lives in Redis beside the event log (keys in functions/model_state/keys.py), so learn-one, predict-one,
checkpoint, the `coelho models` command and the dashboard read and change the same state:

- **Live models** (`live`, `specs`): the models every learn-one and predict-one replica runs, picked up by their
  periodic check (`MODEL_SET_CHECK_S`). `add_model` starts a challenger from the start of the retained log when the
  log still holds entry 1 (it replays everything), otherwise from now (it learns the entries after the current
  head): its first snapshot, written here, is where every replica starts, so they all hold the same model.
- **Aliases** (`aliases`, `champions`): `champion` (served by default) and `challenger`, each a registered MLflow
  version (or a model before its first checkpoint). The MLflow registry holds the same aliases for
  `mlflow.pyfunc.load_model("models:/coelho-<domain>@champion")`; Redis is what predict-one reads. `promote` and
  `rollback` replace the champion with one HSET: a request reads the routing once, so it sees the old or the new.
- **Split** (`split`): weights per arm (an alias or a model), sticky per entity key (`pick_arm`).
- **Control** (`control`): one entry point for the `coelho models` command and the model.control CloudEvent.

    >>> pick_arm([("champion", 90), ("challenger", 10)], "user-1") in ("champion", "challenger")
    True
    >>> pick_arm([("champion", 90), ("challenger", 10)], "user-1") == pick_arm([("champion", 90), ("challenger", 10)], "user-1")
    True
    >>> parse_weights(["champion=90", "challenger=10"])
    [('champion', 90), ('challenger', 10)]
"""

from __future__ import annotations

import json
import os
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventing.domain import Domain
from eventing.schema import ValidationError
from functions.model_state.keys import as_text, key, model_key

ALIASES = ("champion", "challenger")
MODEL_SET_CHECK_S = 1.0  # how often learn-one and checkpoint re-read the live models


# --- live models ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """A live model of a domain: its name (a `Domain.model_factories` key), hyper-parameters, where it started."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    start_seq: int = 0
    added_ms: int = 0

    def to_json(self) -> str:
        return json.dumps(
            {"params": self.params, "start_seq": self.start_seq, "added_ms": self.added_ms}, sort_keys=True
        )


def live_models(client: Any, domain: Domain, configured: Sequence[str] = (), seed: bool = True) -> list[ModelSpec]:
    """The domain's live models, oldest first (the first is the champion before any checkpoint). The first call on
    an empty Redis seeds the set with `configured` (COELHO_MODEL_<DOMAIN>, default the domain's default model);
    with seed False (a read-only reader) it only answers with them."""
    live_key = key(domain.name, "live")
    names = [as_text(n) for n in client.smembers(live_key)]
    if not names and not seed:
        return [ModelSpec(name, added_ms=index) for index, name in enumerate(configured or [domain.default_model])]
    if not names:
        initial = list(configured) or [domain.default_model]
        pipe = client.pipeline(transaction=True)
        for index, name in enumerate(initial):
            pipe.hsetnx(key(domain.name, "specs"), name, ModelSpec(name, added_ms=index).to_json())
        pipe.sadd(live_key, *initial)
        pipe.sadd(key(domain.name, "models"), *initial)
        pipe.execute()
        names = [as_text(n) for n in client.smembers(live_key)]
    raw = client.hmget(key(domain.name, "specs"), names)
    specs = []
    for name, value in zip(names, raw, strict=True):
        data = json.loads(value) if value else {}
        specs.append(
            ModelSpec(name, data.get("params") or {}, int(data.get("start_seq", 0)), int(data.get("added_ms", 0)))
        )
    return sorted(specs, key=lambda s: (s.added_ms, s.name))


def add_model(client: Any, domain: Domain, name: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Start model `name` (with `params`) learning the domain's log: from the start of the retained log if it still
    holds entry 1, else from now. Idempotent for a live model. ValidationError for an unknown model or bad params."""
    from functions.model_state.online_model import OnlineModel

    if name not in domain.model_factories:
        raise ValidationError(
            {"model": f"unknown model {name!r} for {domain.name}: one of {', '.join(domain.model_factories)}"}
        )
    if params is not None and not isinstance(params, Mapping):
        raise ValidationError({"params": "expected a JSON object of hyper-parameters"})
    specs = {s.name: s for s in live_models(client, domain)}
    if name in specs:
        spec = specs[name]
        return {
            "domain": domain.name,
            "action": "add",
            "model": name,
            "added": False,
            "live": True,
            "start_seq": spec.start_seq,
            "start": "already live",
        }
    try:
        state = OnlineModel.fresh(domain, name, params)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ValidationError({"params": f"not accepted by {name}: {exc}"}) from None
    first = client.xrange(key(domain.name, "log"), count=1)
    head = int(client.get(key(domain.name, "seq")) or 0)
    first_seq = int(as_text(first[0][0]).split("-")[0]) if first else head + 1
    if first_seq <= 1:  # the log holds every entry since the first: replay it all
        start, start_seq = "start of the log", 0
    else:  # trimmed: the earlier events are gone, learn from now on
        start, start_seq = "now", head
    state.seq = start_seq
    for part in ("snapshot", "summary", "history", "drift", "checkpoint", "outcomes", "restored_from"):
        client.delete(model_key(domain.name, name, part))
    spec = ModelSpec(name, dict(params or {}), start_seq, int(time.time() * 1000))
    pipe = client.pipeline(transaction=True)
    pipe.hset(
        model_key(domain.name, name, "snapshot"),
        mapping={"seq": start_seq, "blob": state.to_bytes(), "events_learned": 0, "written_ms": spec.added_ms},
    )
    pipe.hset(key(domain.name, "specs"), name, spec.to_json())
    pipe.sadd(key(domain.name, "models"), name)
    pipe.sadd(key(domain.name, "live"), name)
    pipe.execute()
    return {
        "domain": domain.name,
        "action": "add",
        "model": name,
        "added": True,
        "live": True,
        "params": spec.params,
        "start": start,
        "start_seq": start_seq,
        "to_replay": max(0, head - start_seq),
        "log_head": head,
    }


def remove_model(client: Any, domain: Domain, name: str) -> dict[str, Any]:
    """Stop model `name` everywhere (its Redis state stays readable). The champion's model and the last live model
    cannot be removed: promote another one first."""
    specs = live_models(client, domain)
    names = [s.name for s in specs]
    if name not in names:
        raise ValidationError({"model": f"{name!r} is not live for {domain.name}: {', '.join(names)}"})
    if len(names) == 1:
        raise ValidationError({"model": f"{name!r} is the only live model of {domain.name}"})
    if champion(client, domain, names)["model"] == name:
        raise ValidationError({"model": f"{name!r} is the champion of {domain.name}: promote another model first"})
    pipe = client.pipeline(transaction=True)
    pipe.srem(key(domain.name, "live"), name)
    pipe.srem(key(domain.name, "models"), name)
    pipe.hdel(key(domain.name, "specs"), name)
    pipe.execute()
    dropped = [a for a, v in aliases(client, domain).items() if v.get("model") == name]
    if dropped:
        client.hdel(key(domain.name, "aliases"), *dropped)
    return {"domain": domain.name, "action": "remove", "model": name, "live": False, "aliases_dropped": dropped}


# --- aliases: champion and challenger -------------------------------------------------------------------------------
def aliases(client: Any, domain: Domain) -> dict[str, dict[str, Any]]:
    """alias -> {model, version (None before a checkpoint), seq}."""
    return {as_text(k): json.loads(v) for k, v in client.hgetall(key(domain.name, "aliases")).items()}


def champion(client: Any, domain: Domain, live: Sequence[str] | None = None) -> dict[str, Any]:
    """The champion {model, version}: the `champion` alias, or the domain's first live model before any."""
    found = aliases(client, domain).get("champion")
    if found:
        return found
    names = list(live) if live is not None else [s.name for s in live_models(client, domain)]
    return {"model": names[0] if names else domain.default_model, "version": None}


def _target(client: Any, domain: Domain, target: str) -> dict[str, Any]:
    """{model, version, seq} of a promotion target: a registered version number or a live model's name (its latest
    registered version, or none yet)."""
    live = [s.name for s in live_models(client, domain)]
    if str(target).isdigit():
        from functions.model_state.registry import version_info

        info = version_info(domain.name, int(target))
        if info is None:
            raise ValidationError({"version": f"coelho-{domain.name} has no version {target}"})
    elif target in live:
        info = {"model": target, "version": None, "seq": None}
        if os.environ.get("MLFLOW_TRACKING_URI"):
            from functions.model_state.registry import latest_version

            latest = latest_version(domain.name, target)
            if latest is not None:
                info = {"model": target, "version": int(latest.version), "seq": int((latest.tags or {}).get("seq", 0))}
    else:
        raise ValidationError(
            {"target": f"{target!r} is neither a version of coelho-{domain.name} nor a live model: {', '.join(live)}"}
        )
    if info["model"] not in live:
        raise ValidationError(
            {
                "target": f"version {target} is of {info['model']}, which is not live: "
                f"`coelho models add {domain.name} {info['model']}` first"
            }
        )
    return info


def _set_aliases(
    client: Any, domain: Domain, new: Mapping[str, Mapping[str, Any]], push: Mapping[str, Any] | None
) -> None:
    """Write aliases to Redis in one transaction (and the champion being replaced onto the rollback list), then to
    MLflow when configured."""
    pipe = client.pipeline(transaction=True)
    if push is not None:
        pipe.lpush(key(domain.name, "champions"), json.dumps(push, sort_keys=True))
        pipe.ltrim(key(domain.name, "champions"), 0, 99)
    pipe.hset(key(domain.name, "aliases"), mapping={a: json.dumps(dict(v), sort_keys=True) for a, v in new.items()})
    pipe.execute()
    if os.environ.get("MLFLOW_TRACKING_URI"):
        from functions.model_state.registry import set_alias

        for alias, value in new.items():
            if value.get("version") is not None:
                set_alias(domain.name, alias, int(value["version"]))


def _crown(client: Any, domain: Domain, info: dict[str, Any], action: str, push: bool) -> dict[str, Any]:
    current = aliases(client, domain)
    old = current.get("champion") or champion(client, domain)
    new: dict[str, dict[str, Any]] = {"champion": {**info, "at_ms": int(time.time() * 1000)}}
    challenger = current.get("challenger")
    if challenger and challenger.get("model") == info["model"] and old.get("model") != info["model"]:
        new["challenger"] = {k: old.get(k) for k in ("model", "version", "seq")}  # they swap places
    _set_aliases(client, domain, new, old if push else None)
    return {
        "domain": domain.name,
        "action": action,
        "champion": new["champion"],
        "previous": old,
        "challenger": new.get("challenger", challenger),
    }


def promote(client: Any, domain: Domain, target: str) -> dict[str, Any]:
    """Make `target` (a version number or a live model) the champion; the champion it replaces can be rolled back
    to. When the challenger is promoted, the old champion becomes the challenger."""
    return _crown(client, domain, _target(client, domain, str(target)), "promote", push=True)


def rollback(client: Any, domain: Domain) -> dict[str, Any]:
    """Give the champion back to the previous one (ValidationError when there is none)."""
    raw = client.lpop(key(domain.name, "champions"))
    if raw is None:
        raise ValidationError({"domain": f"{domain.name} has no earlier champion to roll back to"})
    previous = json.loads(raw)
    live = [s.name for s in live_models(client, domain)]
    if previous.get("model") not in live:
        client.lpush(key(domain.name, "champions"), raw)
        raise ValidationError({"domain": f"the previous champion {previous.get('model')} is not live: add it first"})
    info = {k: previous.get(k) for k in ("model", "version", "seq")}
    return _crown(client, domain, info, "rollback", push=False)


def after_checkpoint(client: Any, domain: Domain, model: str, version: int, seq: int) -> dict[str, int]:
    """Aliases a new registered version takes: `champion` for the first checkpoint of the champion's model (the
    domain's first live model before any promotion); each alias follows its model's newest version; `challenger`
    for the first checkpoint of another live model while no challenger is set. Returns alias -> version."""
    current = aliases(client, domain)
    first_live = champion(client, domain)["model"]
    info = {"model": model, "version": version, "seq": seq}
    moved: dict[str, dict[str, Any]] = {}
    for alias in ALIASES:
        held = current.get(alias)
        if held is not None and held.get("model") == model:
            moved[alias] = {**held, **info}
    if "champion" not in current and model == first_live:
        moved["champion"] = {**info, "at_ms": int(time.time() * 1000)}
    elif "challenger" not in current and model != (current.get("champion") or {}).get("model", first_live):
        moved["challenger"] = info
    if moved:
        _set_aliases(client, domain, moved, None)
    return {alias: version for alias in moved}


# --- split ----------------------------------------------------------------------------------------------------------
def parse_weights(items: Iterable[str]) -> list[tuple[str, int]]:
    """["champion=90", "challenger=10"] -> [("champion", 90), ("challenger", 10)]; ValidationError otherwise."""
    arms = []
    for item in items:
        name, sep, weight = str(item).partition("=")
        if not sep or not weight.strip().isdigit():
            raise ValidationError({"weights": f"{item!r}: expected ARM=WEIGHT, e.g. champion=90"})
        arms.append((name.strip(), int(weight)))
    return arms


def set_split(
    client: Any, domain: Domain, arms: Sequence[tuple[str, int]] | Mapping[str, int] | None
) -> dict[str, Any]:
    """Split predict-one's default traffic between arms (aliases or live models) by weight, sticky per entity key.
    None or a single arm clears it (everything goes to the champion)."""
    pairs = list(arms.items()) if isinstance(arms, Mapping) else list(arms or [])
    live = [s.name for s in live_models(client, domain)]
    errors = {}
    for arm, weight in pairs:
        if arm not in ALIASES and arm not in live:
            errors[arm] = f"neither an alias ({', '.join(ALIASES)}) nor a live model ({', '.join(live)})"
        elif not isinstance(weight, int) or weight < 0:
            errors[arm] = "weight must be a non-negative integer"
    if errors:
        raise ValidationError(errors)
    pairs = [(a, w) for a, w in pairs if w > 0]
    if len(pairs) <= 1:
        client.delete(key(domain.name, "split"))
        return {"domain": domain.name, "action": "split", "split": None}
    client.set(key(domain.name, "split"), json.dumps({"arms": pairs, "at_ms": int(time.time() * 1000)}))
    total = sum(w for _, w in pairs)
    return {"domain": domain.name, "action": "split", "split": {a: round(100 * w / total, 2) for a, w in pairs}}


def read_split(raw: Any) -> list[tuple[str, int]]:
    if not raw:
        return []
    return [(str(a), int(w)) for a, w in json.loads(raw).get("arms", [])]


def pick_arm(arms: Sequence[tuple[str, int]], entity: str) -> str:
    """The arm of `entity` (its key): a stable hash into the cumulative weights, the same in every process."""
    total = sum(w for _, w in arms)
    point = zlib.crc32(entity.encode("utf-8")) % total
    for arm, weight in arms:
        if point < weight:
            return arm
        point -= weight
    return arms[-1][0]


# --- one entry point for the CLI and the model.control CloudEvent ------------------------------------------------------
ACTIONS = ("add", "remove", "promote", "rollback", "split")


def control(client: Any, domain: Domain, data: Mapping[str, Any]) -> dict[str, Any]:
    """Run one control action: {"action": add|remove|promote|rollback|split, "model", "params", "target",
    "weights": {arm: weight}}."""
    action = data.get("action")
    if action == "add":
        return add_model(client, domain, _required(data, "model"), data.get("params"))
    if action == "remove":
        return remove_model(client, domain, _required(data, "model"))
    if action == "promote":
        return promote(client, domain, str(data.get("target") or data.get("version") or _required(data, "model")))
    if action == "rollback":
        return rollback(client, domain)
    if action == "split":
        weights = data.get("weights")
        if weights is not None and not isinstance(weights, Mapping):
            raise ValidationError({"weights": "expected an object {arm: weight}"})
        return set_split(client, domain, dict(weights or {}))
    raise ValidationError({"action": f"expected one of {', '.join(ACTIONS)}"})


def _required(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not value or not isinstance(value, str | int):
        raise ValidationError({name: "missing"})
    return str(value)
