"""Model checkpoints in MLflow: one run per checkpoint, the state as an S3 artifact, a registered model version.

Registered model per domain: `coelho-<domain>` (e.g. coelho-tfd); each version is tagged with the model name,
the log position (seq) and the events learned, so several models of one domain can live side by side. Each version
is a pyfunc model (functions/model_state/pyfunc.py: `mlflow.pyfunc.load_model("models:/coelho-tfd@champion")`
answers a dataframe of events as predict-one answers that version) with the domain's signature and an input
example; the aliases `champion` and `challenger` are set by functions/model_state/ab.py. The run also keeps the
replay state `model/state.pkl.lz4`: a `OnlineModel` (model + metrics + seq), the same bytes as a Redis snapshot,
which restores and frozen serving read, signed and verified like a snapshot (functions/model_state/codec.py). MLflow is imported lazily: it costs seconds of start-up and only
checkpoint, restore, promotion and frozen versions need it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from functions.middleware.app import DependencyUnavailable
from functions.model_state.codec import StateRefused
from functions.model_state.keys import key
from functions.model_state.online_model import OnlineModel

if TYPE_CHECKING:
    from functions.model_state.replica import ModelReplica

log = logging.getLogger("coelho.functions.model_state.registry")

ARTIFACT = "state.pkl.lz4"


def registered_name(domain: str) -> str:
    return f"coelho-{domain}"


def mlflow_client() -> Any:
    """An MLflow client of MLFLOW_TRACKING_URI that fails in seconds (DependencyUnavailable when it is unset)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise DependencyUnavailable("MLFLOW_TRACKING_URI is not set")
    # Fail in seconds, not minutes, when MLflow or its S3 store is down: the caller answers 503 and is retried.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def _mlflow_call(what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return func(*args, **kwargs)
    except Exception as exc:
        text = str(exc)
        signs = (
            "Connection refused",
            "Max retries",
            "ConnectionError",
            "503",
            "502",
            "500",
            "timed out",
            "reset by peer",
        )
        if any(s in text for s in signs):
            raise DependencyUnavailable(f"MLflow unavailable during {what}: {text[:300]}") from exc
        raise


def log_checkpoint(state: OnlineModel, blob: bytes, summary: dict[str, Any]) -> dict[str, Any]:
    """Log one checkpoint run and register a new model version. Returns what was registered."""
    client = mlflow_client()
    domain, model = state.domain_name, state.model_name
    experiment_name = f"coelho-{domain}"
    experiment = _mlflow_call("get experiment", client.get_experiment_by_name, experiment_name)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else _mlflow_call("create experiment", client.create_experiment, experiment_name)
    )
    run = _mlflow_call(
        "create run",
        client.create_run,
        experiment_id,
        run_name=f"{model}-seq{state.seq}",
        tags={"coelho.domain": domain, "coelho.model": model, "coelho.seq": str(state.seq)},
    )
    run_id = run.info.run_id
    now_ms = int(time.time() * 1000)
    from mlflow.entities import Metric, Param

    scalar = {k: v for k, v in summary["metrics"].items() if isinstance(v, int | float)}
    extras = {"events_learned": state.events_learned, "seq": state.seq, "drifts": state.drifts}
    if "n_clusters" in summary:
        extras.update(n_clusters=summary["n_clusters"], n_micro_clusters=summary["n_micro_clusters"])
    metrics = [Metric(_metric_name(k), float(v), now_ms, state.events_learned) for k, v in {**scalar, **extras}.items()]
    params = [Param("model", model), Param("domain", domain)]
    _mlflow_call("log batch", client.log_batch, run_id, metrics=metrics, params=params)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        folder.mkdir()
        (folder / ARTIFACT).write_bytes(blob)
        (folder / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        _mlflow_call("log artifacts", client.log_artifacts, run_id, str(folder), "model")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ARTIFACT
        path.write_bytes(blob)
        import mlflow

        from functions.model_state.pyfunc import log_pyfunc

        with mlflow.start_run(run_id=run_id):
            info = _mlflow_call("log pyfunc model", log_pyfunc, state, path)
    _mlflow_call("end run", client.set_terminated, run_id)
    name = registered_name(domain)
    try:
        client.create_registered_model(name, description=f"COELHO RealTime {domain} model checkpoints")
    except Exception as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
            _mlflow_call("create registered model", _raise, exc)
    source = info.model_uri
    tags = {"model": model, "seq": str(state.seq), "events_learned": str(state.events_learned)}
    version = _mlflow_call(
        "create model version",
        client.create_model_version,
        name,
        source,
        run_id=run_id,
        tags=tags,
        model_id=info.model_id,
    )
    return {
        "domain": domain,
        "model": model,
        "registered_model": name,
        "version": int(version.version),
        "run_id": run_id,
        "seq": state.seq,
        "events_learned": state.events_learned,
        "time_ms": now_ms,
        "artifact_uri": f"{run.info.artifact_uri}/model/{ARTIFACT}",
        "model_uri": f"models:/{name}/{version.version}",
    }


def _raise(exc: Exception) -> None:
    raise exc


def _metric_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in name)


def latest_version(domain: str, model: str) -> Any | None:
    """The newest registered version of `model` in its domain's registered model, or None."""
    versions = model_versions(domain, model)
    return versions[0] if versions else None


def model_versions(domain: str, model: str) -> list[Any]:
    """The registered versions of `model` in its domain's registered model, newest first."""
    client = mlflow_client()
    versions = _mlflow_call("search model versions", client.search_model_versions, f"name='{registered_name(domain)}'")
    mine = [v for v in versions if (v.tags or {}).get("model") == model]
    return sorted(mine, key=lambda v: int(v.version), reverse=True)


def restore_latest(domain: str, model: str) -> tuple[OnlineModel, int] | None:
    """The state of the newest registered version whose state verifies (and its version number), or None if there
    is no version. A version whose state is refused (codec.StateRefused: unsigned, forged, of another model or
    position) is reported and skipped; when every version is refused, StateRefused is raised: the caller must not
    start the model from scratch while checkpoints exist."""
    versions = model_versions(domain, model)
    refused: StateRefused | None = None
    for version in versions:
        try:
            state = _read_state(domain, version, "mlflow")
        except StateRefused as exc:
            refused = exc
            log.error("%s/%s: registered version %s refused, trying the one before", domain, model, version.version)
            continue
        log.info("restored %s/%s from registered version %s (seq %d)", domain, model, version.version, state.seq)
        return state, int(version.version)
    if refused is not None:
        raise refused
    return None


def _read_state(domain: str, version: Any, where: str) -> OnlineModel:
    """The replay state of a registered version, verified against the version's own model and seq tags."""
    client = mlflow_client()
    tags = version.tags or {}
    seq = tags.get("seq")
    with tempfile.TemporaryDirectory() as tmp:
        path = _mlflow_call("download", client.download_artifacts, version.run_id, f"model/{ARTIFACT}", tmp)
        blob = Path(path).read_bytes()
    return OnlineModel.from_bytes(
        blob, domain, tags.get("model") or "?", int(seq) if seq and seq.isdigit() else None, where=where
    )


def version_info(domain: str, version: int) -> dict[str, Any] | None:
    """{model, version, seq, events_learned} of a registered version, or None when there is no such version."""
    client = mlflow_client()
    try:
        found = client.get_model_version(registered_name(domain), str(version))
    except Exception as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
            return None
        return _mlflow_call("get model version", _raise, exc)  # type: ignore[no-any-return]
    tags = found.tags or {}
    return {
        "model": tags.get("model"),
        "version": int(found.version),
        "seq": int(tags.get("seq", 0)),
        "events_learned": int(tags.get("events_learned", 0)),
    }


def set_alias(domain: str, alias: str, version: int) -> None:
    """Point `alias` (champion, challenger) of the domain's registered model at `version`."""
    client = mlflow_client()
    _mlflow_call("set alias", client.set_registered_model_alias, registered_name(domain), alias, str(version))


def load_version(domain: str, version: int) -> OnlineModel | None:
    """The state registered as `version` (its replay state artifact), frozen; None when there is no such version."""
    client = mlflow_client()
    try:
        found = client.get_model_version(registered_name(domain), str(version))
    except Exception as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
            return None
        return _mlflow_call("get model version", _raise, exc)  # type: ignore[no-any-return]
    return _read_state(domain, found, "frozen")  # StateRefused: not signed by this platform


def restore_if_empty(client: Any, replica: ModelReplica) -> bool:
    """Redis knows nothing of this model (no log, no snapshot): restore its latest MLflow version."""
    domain = replica.domain.name
    if client.exists(key(domain, "seq")) or client.exists(replica.mkey("snapshot")):
        return False
    if not os.environ.get("MLFLOW_TRACKING_URI") or os.environ.get("COELHO_RESTORE", "1") == "0":
        return False
    try:
        restored = restore_latest(domain, replica.model_name)
    except DependencyUnavailable:
        raise
    except Exception as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc):  # no registered model yet: nothing to restore
            return False
        # Any other failure (a slow or failing registry, an artifact that cannot be read yet) must not start the
        # model from scratch while a checkpoint exists: readiness fails and the restore is tried again.
        log.warning("%s/%s: restore from MLflow failed, will retry: %s", domain, replica.model_name, exc)
        raise DependencyUnavailable(f"restoring {domain}/{replica.model_name} from MLflow: {exc}") from exc
    if restored is None:
        return False
    state, version = restored
    replica.install(state)
    client.set(replica.mkey("restored_from"), str(version))
    return True
