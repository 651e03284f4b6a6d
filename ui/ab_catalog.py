"""What a use-case page can ask to answer (docs/adr/0082-ab-testing.md): the domain's live models, its aliases and
its registered versions, as the choices of the pages' model/version selectors.

The live models and the aliases are read from Redis (functions/model_state/ab.py), the registered versions from
MLflow's REST API (the registered model `coelho-<domain>`, each version tagged with its model, seq and events
learned; no MLflow import in the dashboard). `VersionCatalog` reads them in one background thread per dashboard
process every `interval` seconds (and at once after a promotion), so a page never waits for MLflow in a request.

A choice is a token, the value of a selector: "" (predict-one's default routing: the champion or the split's arm),
`model:<name>` (a live model, learning), `version:<n>` (a registered version, frozen) or `alias:<name>` (the version
an alias points to, frozen).

    >>> target("model:logreg"), target("version:3"), target("alias:champion"), target("")
    (('logreg', None), (None, '3'), (None, 'champion'), (None, None))
    >>> cat = Catalog("tfd", live=["logreg_rus", "logreg"], aliases={"champion": {"model": "logreg_rus", "version": 2}},
    ...               versions=[{"version": 2, "model": "logreg_rus", "seq": 400}, {"version": 1, "model": "logreg", "seq": 400}])
    >>> list(choices(cat).values())
    ['model:logreg_rus', 'model:logreg', 'alias:champion', 'version:2', 'version:1']
    >>> resolve(cat, "alias:champion"), resolve(cat, "version:1"), resolve(cat, "model:logreg")
    (('logreg_rus', 2), ('logreg', 1), ('logreg', None))
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from coelho.settings import Settings
from eventing.domains import DOMAINS

log = logging.getLogger("coelho.ui")

DEFAULT_CHOICE = "champion (default)"  # predict-one's default routing: the champion, or the split's arm
VERSIONS_SHOWN = 12  # registered versions listed per model, newest first
CATALOG_INTERVAL_S = 10.0


@dataclass
class Catalog:
    """One domain's live models (oldest first), aliases and registered versions (newest first), as of `updated`."""

    domain: str
    live: list[str] = field(default_factory=list)
    aliases: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: list[dict[str, Any]] = field(default_factory=list)  # {version, model, seq, events_learned, aliases}
    problem: str | None = None  # why the registered versions could not be read (MLflow down)
    updated: float = 0.0

    def version(self, number: int | str) -> dict[str, Any] | None:
        return next((v for v in self.versions if str(v["version"]) == str(number)), None)


def target(token: str) -> tuple[str | None, str | None]:
    """(model, version) to ask predict-one for: a live model, or a version number or alias (frozen)."""
    kind, _, value = (token or "").partition(":")
    if kind == "model" and value:
        return value, None
    if kind in ("version", "alias") and value:
        return None, value
    return None, None


def resolve(catalog: Catalog, token: str) -> tuple[str | None, int | None]:
    """(model, version) a choice stands for: a live model's version is None (it learns), an alias's or a version's
    is its number; (None, None) for the default routing or what the catalogue does not know."""
    kind, _, value = (token or "").partition(":")
    if kind == "model":
        return value, None
    if kind == "alias":
        held = catalog.aliases.get(value) or {}
        version = held.get("version")
        return held.get("model"), int(version) if version is not None else None
    if kind == "version":
        found = catalog.version(value)
        return (found["model"], int(found["version"])) if found else (None, int(value) if value.isdigit() else None)
    return None, None


def choices(catalog: Catalog, default: bool = False) -> dict[str, str]:
    """Selector options, label -> token: the default routing (when `default`), the live models, the aliases that
    point to a registered version, then the registered versions (the newest VERSIONS_SHOWN of each model)."""
    out: dict[str, str] = {DEFAULT_CHOICE: ""} if default else {}
    for name in catalog.live:
        out[f"{name} · live"] = f"model:{name}"
    for alias in sorted(catalog.aliases):
        held = catalog.aliases[alias]
        if held.get("version") is not None:
            out[f"{alias} → {held.get('model')} v{held['version']} · frozen"] = f"alias:{alias}"
    shown: dict[str, int] = {}
    for v in catalog.versions:
        shown[v["model"]] = shown.get(v["model"], 0) + 1
        if shown[v["model"]] <= VERSIONS_SHOWN:
            out[f"v{v['version']} · {v['model']} · frozen"] = f"version:{v['version']}"
    return out


def promotion_choices(catalog: Catalog) -> dict[str, str]:
    """What Promote can take (`coelho models promote DOMAIN VERSION|MODEL`): a live model (its newest version) or a
    registered version of a live model; label -> target."""
    out = {f"{name} (newest version)": name for name in catalog.live}
    for v in catalog.versions:
        if v["model"] in catalog.live:
            out[f"v{v['version']} · {v['model']}"] = str(v["version"])
    return out


def parse_versions(body: dict[str, Any]) -> list[dict[str, Any]]:
    """MLflow's `model-versions/search` answer as catalogue rows, newest first."""
    rows = []
    for mv in body.get("model_versions") or []:
        tags = {t.get("key"): t.get("value") for t in mv.get("tags") or []}
        if not str(mv.get("version", "")).isdigit() or not tags.get("model"):
            continue
        rows.append(
            {
                "version": int(mv["version"]),
                "model": str(tags["model"]),
                "seq": int(tags.get("seq") or 0),
                "events_learned": int(tags.get("events_learned") or 0),
                "created_ms": int(mv.get("creation_timestamp") or 0),
                "aliases": list(mv.get("aliases") or []),
            }
        )
    return sorted(rows, key=lambda r: r["version"], reverse=True)


def registered_versions(settings: Settings, domain: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The registered versions of `coelho-<domain>` from MLflow's REST API, newest first (requests.RequestException
    when MLflow cannot be reached)."""
    resp = requests.get(
        settings.mlflow_uri.rstrip("/") + "/api/2.0/mlflow/model-versions/search",
        params={"filter": f"name='coelho-{domain}'", "max_results": "1000"},
        timeout=timeout,
    )
    resp.raise_for_status()
    return parse_versions(resp.json())


def read_catalog(settings: Settings, domain: str) -> Catalog:
    """One domain's catalogue now: live models and aliases from Redis, registered versions from MLflow (an MLflow
    that does not answer leaves the versions empty and says so in `problem`). Redis errors propagate."""
    from functions.model_state import ab
    from functions.model_state.replica import models_for
    from ui.state_reader import redis_client

    d = DOMAINS[domain]
    client = redis_client(settings)
    try:
        live = [s.name for s in ab.live_models(client, d, models_for(d), seed=False)]
        aliases = ab.aliases(client, d)
    finally:
        client.close()
    catalog = Catalog(domain, live=live, aliases=aliases, updated=time.time())
    try:
        catalog.versions = registered_versions(settings, domain)
    except (requests.RequestException, ValueError, json.JSONDecodeError) as err:
        catalog.problem = f"registered versions unavailable (MLflow: {type(err).__name__})"
    return catalog


class VersionCatalog:
    """Every domain's `Catalog`, refreshed in one background thread per process. `VersionCatalog.get(settings)`."""

    _instance: VersionCatalog | None = None
    _lock = threading.Lock()

    def __init__(self, settings: Settings, interval: float = CATALOG_INTERVAL_S) -> None:
        self.settings = settings
        self.interval = interval
        self.catalogs: dict[str, Catalog] = {name: Catalog(name) for name in DOMAINS}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def get(cls, settings: Settings) -> VersionCatalog:
        with cls._lock:
            if cls._instance is None:
                cls._instance = VersionCatalog(settings)
                cls._instance.start()
            return cls._instance

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="ui-ab-catalog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def refresh_now(self) -> None:
        """Read again at once (after a promotion, a rollback or a checkpoint the page asked for)."""
        self._wake.set()

    def refresh(self) -> None:
        for name in DOMAINS:
            try:
                self.catalogs[name] = read_catalog(self.settings, name)  # replaced in one assignment
            except Exception as err:  # Redis down: keep the last catalogue, the banner names Redis
                log.debug("catalog of %s not read: %s", name, err)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._wake.wait(self.interval)
            self._wake.clear()
