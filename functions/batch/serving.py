"""A batch study's registered model served frozen, beside the River models (docs/adr/0083-batch-studies.md).

`coelho batch train` registers each study's pipeline as a version of `coelho-<domain>-batch` (scikit-learn flavour).
predict-one serves it when a request names the model `batch` (`?model=batch`, or the CloudEvent extension
`model: batch`): the latest registered version, or the one `?version=N` (extension `modelversion`) names. It
answers with the same reply fields as a River model (`Domain.reply_fields()`): `model` is `batch`, `version` the
registered version, `frozen` true, `events_learned` the rows it was trained on and `seq` 0 (it follows no log).

`coelho models compare DOMAIN --batch [N]` puts the same version in the paired comparison (functions/batch/compare.py):
its answers are computed on the log positions the live models were scored on (`batch_outcomes`), from the events of the domain's log, so the
pairs are on the very same events.

The input of the pipeline is the domain's `features(event)` (the study computes the same columns,
functions/batch/features.py), one row per request in the pipeline's own column order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eventing.domain import Domain
from functions.model_state.registry import mlflow_client

BATCH_MODEL = "batch"  # the model name that selects a batch study's registered version
LOOKBACK = 20_000  # log entries read before the first compared position, to find a label's record


@dataclass
class BatchModel:
    """One registered version of `coelho-<domain>-batch`, loaded: answers as a River model's reply does."""

    domain: Domain
    version: int
    pipeline: Any
    train_rows: int = 0
    k: int | None = None

    def predict_many(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """The raw answers (fraud probability, seconds, cluster id) to `rows`, each the domain's `features(event)`."""
        import pandas as pd

        if not rows:
            return []
        columns = list(getattr(self.pipeline, "feature_names_in_", rows[0].keys()))
        frame = pd.DataFrame([dict(r) for r in rows]).reindex(columns=columns)
        if self.domain.task == "classification":
            classes = list(self.pipeline.classes_)
            return [float(p) for p in self.pipeline.predict_proba(frame)[:, classes.index(True)]]
        answers = self.pipeline.predict(frame)
        if self.domain.task == "regression":
            return [max(float(a), 0.0) for a in answers]
        return [int(a) for a in answers]

    def predict_one(self, x: Mapping[str, Any]) -> Any:
        return self.predict_many([x])[0]

    def reply(self, raw: Any, request: Mapping[str, Any] | None = None) -> dict[str, Any]:
        domain = self.domain
        out: dict[str, Any] = {
            "domain": domain.name,
            "model": BATCH_MODEL,
            "version": self.version,
            "frozen": True,
            "events_learned": self.train_rows,
            "seq": 0,
        }
        if request is not None and domain.id_field in request:
            out[domain.id_field] = request[domain.id_field]
        if domain.task == "clustering":
            k = f" of {self.k}" if self.k else ""
            out.update(domain.prediction_values(raw, f"k-means cluster {raw}{k} (batch study, version {self.version})"))
        else:
            out.update(domain.prediction_values(raw))
        return out


def registered_name(domain_name: str) -> str:
    return f"coelho-{domain_name}-batch"


def latest_version(domain_name: str) -> int | None:
    """The newest registered version of `coelho-<domain>-batch`, None when no study registered one."""
    client = mlflow_client()
    try:
        found = client.search_model_versions(f"name='{registered_name(domain_name)}'")
    except Exception as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
            return None
        raise
    versions = [int(v.version) for v in found]
    return max(versions) if versions else None


def load(domain: Domain, version: int) -> BatchModel | None:
    """Registered `version` of the domain's batch model, None when there is no such version."""
    client = mlflow_client()
    try:
        found = client.get_model_version(registered_name(domain.name), str(version))
    except Exception as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
            return None
        raise
    import mlflow.sklearn

    pipeline = mlflow.sklearn.load_model(f"models:/{registered_name(domain.name)}/{version}")
    params: dict[str, str] = {}
    if found.run_id:
        params = dict(client.get_run(found.run_id).data.params)
    k = int(params["k"]) if params.get("k", "").isdigit() else None
    rows = int(params["train_rows"]) if params.get("train_rows", "").isdigit() else 0
    return BatchModel(domain, int(version), pipeline, rows, k)


def batch_outcomes(client: Any, model: BatchModel, reference: Mapping[int, Sequence[Any]]) -> dict[int, list[Any]]:
    """The batch model's outcomes on the log positions of `reference` (a live model's stored outcomes, seq ->
    [truth, answer] or [cluster, features]), in the same form: [truth, batch answer] or [batch cluster, features].
    A label entry is answered from its record (found by the domain's id in the log before it); a position whose
    entry or record the log no longer holds is left out."""
    from functions.model_state.event_log import EventLog

    if not reference:
        return {}
    domain = model.domain
    first, last = min(reference), max(reference)
    log = EventLog(client, domain)
    records: dict[str, Mapping[str, Any]] = {}
    wanted: dict[int, Mapping[str, Any]] = {}
    position = max(0, first - LOOKBACK - 1)
    while position < last:
        entries = log.read_after(position, 2000)
        if not entries:
            break
        for entry in entries:
            if entry.seq > last:
                break
            event_id = entry.event.get(domain.id_field)
            if entry.kind in ("record", "unlabeled") and event_id is not None:
                records[str(event_id)] = entry.event
            if entry.seq in reference:
                source = records.get(str(event_id)) if entry.kind == "label" else entry.event
                if source is not None:
                    wanted[entry.seq] = source
        position = entries[-1].seq
    seqs = sorted(wanted)
    answers = model.predict_many([domain.features(wanted[s]) for s in seqs])
    if domain.task == "clustering":
        return {s: [a, reference[s][1]] for s, a in zip(seqs, answers, strict=True)}
    return {s: [reference[s][0], a] for s, a in zip(seqs, answers, strict=True)}
