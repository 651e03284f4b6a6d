"""The live state of a domain model: what it learned, its progressive-validation metrics, and how it is rebuilt.

A model is a deterministic function of its domain's event log (see docs/adr/0031-model-state-event-log.md):

    model(seq) = learn_one(... learn_one(learn_one(fresh, event 1), event 2) ..., event seq)

`OnlineModel` is that function's state: the River model, its metrics (test-then-train: predict, score, then
learn), the drift detector, labels waiting for their record, and for clustering the per-cluster profiles. It is
pure: `learn_one` touches no I/O, so every process that replays the same log holds the same model. What differs
between classification, regression and clustering lives in the task objects (functions/model_state/tasks.py).

    >>> from eventing.domains import ETA
    >>> state = OnlineModel.fresh(ETA)
    >>> state.events_learned, state.seq
    (0, 0)

Snapshots of it are written and read by `functions.model_state.codec`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eventing.domain import Domain
from eventing.domains import get_domain
from eventing.schema import value_at
from functions.model_state.tasks import Task, task_of

MAX_PENDING = 50_000  # records waiting for a delayed label (oldest dropped first)
# Labels that arrive before their record wait for it (the record is then learned with it at once): at most this many
# (oldest dropped first) and for at most this long in log time (the entries' Redis time, so every replica and every
# replay drops the same ones). Constants, not settings: replicas configured differently would learn differently.
MAX_EARLY_LABELS = 10_000
EARLY_LABEL_TTL_MS = 3_600_000
PROFILE_TOP = 5  # categories kept per cluster profile field in summaries


# --- what one applied event did -------------------------------------------------------------------
@dataclass
class Outcome:
    seq: int
    learned: bool
    prediction: Any = None
    drift: bool = False


@dataclass
class ClusterProfile:
    """Value distributions of the `Domain.profile_fields` of the events assigned to one cluster."""

    count: int = 0
    categories: dict[str, dict[str, int]] = field(default_factory=dict)
    numbers: dict[str, list[float]] = field(default_factory=dict)  # field -> [n, mean, m2, min, max]

    def update(self, event: Mapping[str, Any], fields: tuple[str, ...]) -> None:
        self.count += 1
        for path in fields:
            value = value_at(event, path)
            if value is None:
                continue
            if isinstance(value, bool | str):
                counts = self.categories.setdefault(path, {})
                counts[str(value)] = counts.get(str(value), 0) + 1
            else:
                x = float(value)
                stats = self.numbers.setdefault(path, [0.0, 0.0, 0.0, x, x])
                stats[0] += 1
                delta = x - stats[1]
                stats[1] += delta / stats[0]
                stats[2] += delta * (x - stats[1])
                stats[3] = min(stats[3], x)
                stats[4] = max(stats[4], x)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"samples": self.count}
        for path, counts in self.categories.items():
            total = sum(counts.values()) or 1
            top = sorted(counts.items(), key=lambda kv: -kv[1])[:PROFILE_TOP]
            out[path] = {k: round(v / total, 3) for k, v in top}
        for path, (n, mean, m2, lo, hi) in self.numbers.items():
            std = math.sqrt(m2 / n) if n > 1 else 0.0
            out[path] = {"mean": round(mean, 3), "std": round(std, 3), "min": round(lo, 3), "max": round(hi, 3)}
        return out

    def describe(self) -> str:
        """One line a person can read: the dominant behaviour of this cluster."""
        parts: list[str] = []
        for path, counts in self.categories.items():
            total = sum(counts.values()) or 1
            value, n = max(counts.items(), key=lambda kv: kv[1])
            parts.append(
                f"{path.split('.')[-1]} {'mostly ' if n / total >= 0.5 else 'often '}{value} ({n / total:.0%})"
            )
        for path, (_n, mean, _m2, _lo, _hi) in self.numbers.items():
            parts.append(f"avg {path} {mean:,.1f}")
        return f"{self.count} interactions: " + ", ".join(parts) if parts else f"{self.count} interactions"


# --- the deterministic model state ---------------------------------------------------------------
@dataclass
class OnlineModel:
    """A domain model, its metrics and bookkeeping at log position `seq`. `learn_one` is pure and deterministic."""

    domain_name: str
    model_name: str
    model: Any
    metrics: dict[str, Any]
    seq: int = 0
    events_learned: int = 0
    drift_detector: Any = None
    drifts: int = 0
    pending: OrderedDict[str, tuple[dict[str, Any], Any]] = field(default_factory=OrderedDict)
    labels_unmatched: int = 0  # labels that found no record: expired or dropped while parked
    early_labels: OrderedDict[str, tuple[Any, int]] = field(default_factory=OrderedDict)  # id -> (target, t_ms)
    learn_errors: int = 0  # events the model could not learn (same on every replica: the state is deterministic)
    last_error: str | None = None
    clusters: dict[int, ClusterProfile] = field(default_factory=dict)
    last_event_ms: int = 0
    chain: str | None = None  # the event log's chain value after entry `seq` (None: not known, not checked)

    @classmethod
    def fresh(
        cls, domain: Domain, model_name: str | None = None, params: Mapping[str, Any] | None = None, seq: int = 0
    ) -> OnlineModel:
        """A model that has learned nothing, at log position `seq` (it learns the entries after it). params: River
        hyper-parameters replacing the factory's (`River Base.clone`, nested dicts for pipeline steps)."""
        name = model_name or domain.default_model
        model = domain.make_model(name)
        if params:
            model = model.clone(dict(params))
        # Drift: ADWIN on the task's error signal (functions/model_state/tasks.py, ADR 0071).
        return cls(
            domain.name, name, model, domain.metric_factories(), seq=seq, drift_detector=task_of(domain).drift_watch()
        )

    @property
    def domain(self) -> Domain:
        return get_domain(self.domain_name)

    @property
    def task(self) -> Task:
        return task_of(self.domain)

    # --- predictions ---------------------------------------------------------------------------
    def predict_one(self, x: dict[str, Any]) -> Any:
        """The model's raw answer: fraud probability (classification), seconds (regression), cluster id."""
        return self.task.predict(self, x)

    def reply(
        self, raw: Any, version: int | None = None, request: Mapping[str, Any] | None = None, frozen: bool = False
    ) -> dict[str, Any]:
        """predict-one's reply with the raw answer `raw` of this state: exactly the fields the domain declares
        (`Domain.reply_fields`). version: the model's last registered MLflow version (frozen: the registered
        version this state is); request: the clean prediction request, whose event id the reply echoes."""
        domain = self.domain
        out: dict[str, Any] = {
            "domain": domain.name,
            "model": self.model_name,
            "version": version,
            "frozen": frozen,
            "events_learned": self.events_learned,
            "seq": self.seq,
        }
        if request is not None and domain.id_field in request:
            out[domain.id_field] = request[domain.id_field]
        out.update(self.task.reply(self, raw))
        return out

    # --- test-then-train ----------------------------------------------------------------------
    def learn_one(self, seq: int, kind: str, event: dict[str, Any], t_ms: int) -> Outcome:
        """Learn log entry `seq`, test-then-train. kind: record (features+target), unlabeled (awaits a label), label."""
        if seq != self.seq + 1:
            raise ValueError(f"{self.domain_name}/{self.model_name}: entry {seq} learned at position {self.seq}")
        self.seq = seq
        self.last_event_ms = t_ms
        try:
            return self._learn_one(seq, kind, event, t_ms)
        except Exception as exc:  # a poison event must not stop the log: skip it, identically everywhere
            self.learn_errors += 1
            self.last_error = f"seq {seq}: {type(exc).__name__}: {exc}"
            return Outcome(seq, learned=False)

    def _learn_one(self, seq: int, kind: str, event: dict[str, Any], t_ms: int) -> Outcome:
        domain = self.domain
        early = self._early_labels(t_ms)
        if kind == "label":
            key = str(event.get(domain.id_field))
            waiting = self.pending.pop(key, None)
            if waiting is None:  # before its record: parked until the record comes (or it expires)
                early.pop(key, None)
                early[key] = (event[domain.target or ""], t_ms)
                while len(early) > MAX_EARLY_LABELS:
                    early.popitem(last=False)
                    self.labels_unmatched += 1
                return Outcome(seq, learned=False)
            x, prediction = waiting
            return self._score_and_learn(x, prediction, event[domain.target or ""], event, t_ms)
        x = domain.features(event)
        prediction = self.predict_one(x)
        parked = early.pop(str(event.get(domain.id_field)), None) if early else None
        if kind == "unlabeled" and parked is not None:  # its label came first: learn it now
            return self._score_and_learn(x, prediction, parked[0], event, t_ms)
        if kind == "unlabeled":
            self.pending[str(event.get(domain.id_field))] = (x, prediction)
            while len(self.pending) > MAX_PENDING:
                self.pending.popitem(last=False)
            return Outcome(seq, learned=False, prediction=prediction)
        y = event.get(domain.target) if domain.target else None
        return self._score_and_learn(x, prediction, y, event, t_ms)

    def _early_labels(self, t_ms: int) -> OrderedDict[str, tuple[Any, int]]:
        """The parked labels, without those older than EARLY_LABEL_TTL_MS at log time `t_ms` (counted unmatched)."""
        early = self.__dict__.get("early_labels")
        if early is None:  # a snapshot written before labels were parked
            early = self.early_labels = OrderedDict()
        while early and t_ms - next(iter(early.values()))[1] > EARLY_LABEL_TTL_MS:
            early.popitem(last=False)
            self.labels_unmatched += 1
        return early

    def _score_and_learn(
        self, x: dict[str, Any], prediction: Any, y: Any, event: Mapping[str, Any], t_ms: int
    ) -> Outcome:
        task = self.task
        y = task.target(y)
        drifted = task.score(self, x, prediction, y, event, t_ms)
        task.learn(self, x, y)
        self.events_learned += 1
        return Outcome(self.seq, learned=True, prediction=prediction, drift=drifted)

    def watch_error(self, error: float) -> bool:
        """Feed the drift detector one error; True when it reports a drift (counted in `drifts`)."""
        if self.drift_detector is None:
            return False
        self.drift_detector.update(error)
        if self.drift_detector.drift_detected:
            self.drifts += 1
            return True
        return False

    # --- clustering state -----------------------------------------------------------------------
    def cluster_profile(self, cluster: int) -> ClusterProfile:
        """The profile of `cluster`'s events (a new one for a new cluster)."""
        return self.clusters.setdefault(cluster, ClusterProfile())

    def clusterer(self) -> Any:
        """The last step of the model's pipeline (the model itself when it is not a pipeline)."""
        steps = getattr(self.model, "steps", None)
        return list(steps.values())[-1] if steps else self.model

    def scaled(self, x: dict[str, Any]) -> dict[str, Any]:
        """`x` through every step of the model's pipeline but the last."""
        steps = getattr(self.model, "steps", None)
        if not steps:
            return x
        for step in list(steps.values())[:-1]:
            x = step.transform_one(x)
        return x

    # --- what people read ---------------------------------------------------------------------
    def metric_values(self) -> dict[str, Any]:
        """JSON-friendly metric values: numbers, the confusion matrix as nested counts, reports as text."""
        out: dict[str, Any] = {}
        for name, metric in self.metrics.items():
            if name == "ConfusionMatrix":
                out[name] = {str(t): {str(p): int(n) for p, n in row.items()} for t, row in metric.data.items()}
            elif name == "ClassificationReport":
                out[name] = repr(metric)
            else:
                try:
                    value = float(metric.get())
                except (TypeError, ValueError, ZeroDivisionError):
                    value = float("nan")
                out[name] = value if math.isfinite(value) else None
        return out

    def cluster_summary(self) -> dict[str, Any]:
        clusterer = self.clusterer()
        return {
            "n_clusters": int(getattr(clusterer, "n_clusters", len(getattr(clusterer, "centers", {}) or {}))),
            "n_micro_clusters": len(getattr(clusterer, "micro_clusters", {}) or {}),
            "clusters": {str(c): p.summary() for c, p in sorted(self.clusters.items())},
        }

    def describe_cluster(self, cluster: int | None) -> str:
        if cluster is None:
            return "no clusters yet: the model has not learned enough interactions"
        profile = self.clusters.get(cluster)
        return f"cluster {cluster}: " + (profile.describe() if profile else "new cluster, no profile yet")

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "domain": self.domain_name,
            "model": self.model_name,
            "seq": self.seq,
            "events_learned": self.events_learned,
            "metrics": self.metric_values(),
            "drifts": self.drifts,
            "pending_labels": len(self.pending),
            "labels_unmatched": self.labels_unmatched,
            "labels_waiting_for_record": len(self.__dict__.get("early_labels") or ()),
            "learn_errors": self.learn_errors,
            "last_error": self.last_error,
            "last_event_ms": self.last_event_ms,
        }
        out.update(self.task.summary(self))
        return out

    # --- snapshots (functions.model_state.codec) ------------------------------------------------
    def to_bytes(self) -> bytes:
        from functions.model_state.codec import encode

        return encode(self)

    @staticmethod
    def from_bytes(
        blob: bytes, domain: str | None = None, model: str | None = None, seq: int | None = None, where: str = "redis"
    ) -> OnlineModel:
        """The state of a signed blob, verified (codec.decode: StateRefused when it is not the expected one)."""
        from functions.model_state.codec import decode

        return decode(blob, domain, model, seq, where)
