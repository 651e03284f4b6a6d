"""The fraud map's risk: the fraud probability the live champion model gives each transaction the map shows.

The dashboard keeps its own read-only copy of the champion (a follower `ModelReplica` behind the assistant's
`ReadOnlyRedis`, functions/assistant/readonly_redis.py, as the assistant follows models): it loads the model's latest
snapshot from Redis, replays the domain's log after it, and answers with `OnlineModel.predict_one`, what predict-one
answers the Predict button with (the state is a deterministic function of the log, so both copies give the same
probability at the same log position). Scoring the map's 300 transactions this way costs tens of milliseconds
(bench/fraud_map.py); asking predict-one for each would be 300 HTTP requests every reading, counted in its request
metrics as traffic.

Only the poller's map thread calls this (ui/live.py), every few seconds while someone has the map open: never
a page's refresh. When the model cannot be read (Redis away, no model-state key in this process: StateKeyMissing
on a cluster without COELHO_STATE_KEY) `score` answers None for every transaction and says why in `problem`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from eventing.domains import get_domain

log = logging.getLogger("coelho.ui")

# How far the snapshot may be ahead of the copy before loading it beats replaying the log (a model that was not
# followed for a while: nobody had the map open).
RELOAD_BEHIND = 5000


class ChampionRisk:
    """Scores events with the domain's live champion, followed read-only in this process."""

    def __init__(self, client: redis.Redis, domain: str = "tfd") -> None:
        from functions.assistant.readonly_redis import ReadOnlyRedis

        self.redis: Any = ReadOnlyRedis(client)
        self.domain = get_domain(domain)
        self.replica: Any = None  # the champion's ModelReplica
        self.problem: str | None = None  # why the last scoring gave no probabilities
        self.model: str | None = None  # the model that gave the last probabilities, after `events_learned` events
        self.events_learned = 0
        self._lock = threading.Lock()

    def champion(self) -> tuple[str, dict[str, Any]]:
        """The champion's name and hyper-parameters, as predict-one resolves it: the `champion` alias when it holds
        a live model, else the first live model (functions/predict.py `refresh_routing`)."""
        from functions.model_state import ab
        from functions.model_state.replica import models_for

        specs = ab.live_models(self.redis, self.domain, models_for(self.domain), seed=False)
        held = (ab.aliases(self.redis, self.domain).get("champion") or {}).get("model")
        by_name = {s.name: s for s in specs}
        spec = by_name[held] if held in by_name else specs[0]
        return spec.name, dict(spec.params)

    def _follow(self) -> Any:
        """The champion's replica, brought to the end of the log (up to a pause, like every follower)."""
        from functions.model_state.keys import model_key
        from functions.model_state.replica import ModelReplica

        name, params = self.champion()
        replica = self.replica
        if replica is None or replica.model_name != name or replica.params != params:
            replica = ModelReplica(self.redis, self.domain, name, role="follower", params=params)
            replica.load_snapshot()
            self.replica = replica
        else:
            snapshot_seq = int(self.redis.hget(model_key(self.domain.name, name, "snapshot"), "seq") or 0)
            if snapshot_seq - replica.state.seq > RELOAD_BEHIND:
                replica.load_snapshot()
        replica.catch_up()
        return replica

    def score(self, events: Sequence[Mapping[str, Any]]) -> list[float | None]:
        """The champion's fraud probability for each clean event (None for all when the model cannot be read)."""
        with self._lock:
            try:
                replica = self._follow()
                with replica.lock:
                    state = replica.state
                    self.model, self.events_learned = state.model_name, state.events_learned
                    out: list[float | None] = []
                    for event in events:
                        try:
                            out.append(float(state.predict_one(self.domain.features(dict(event)))))
                        except (KeyError, TypeError, ValueError):  # an event the model cannot read: no risk
                            out.append(None)
            except Exception as exc:  # never let the map thread die: the map shows no risk and says why
                text = f"{type(exc).__name__}: {exc}"
                if text != self.problem:
                    log.warning("fraud map: the champion's risk is not available: %s", text)
                self.problem = text
                return [None] * len(events)
            self.problem = None
            return out
