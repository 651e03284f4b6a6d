"""A batch study in MLflow: logged as one run with its registered model, and read back for `coelho batch report`.

Experiment `coelho-<domain>-batch`; per run: the study's params (table URI and version, labels version, split
time and index, rows, model), its metrics flattened as `<part>.<metric>` (`batch.roc_auc`,
`online_progressive.roc_auc`, `gap_progressive.roc_auc`, ...), the figures under `plots/`, `study.json` (the whole
summary, notes included), and the scikit-learn pipeline (sklearn flavour, with signature and input example)
registered as a new version of `coelho-<domain>-batch`.

A run is opened only once the study has been computed: a failure while logging ends it FAILED, and the report
reads FINISHED runs only.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from functions.batch.diagnostics import FIGURES
from functions.batch.scores import GAP_METRICS
from functions.batch.study import StudyResult

PARTS = ("batch", "online_progressive", "online_frozen")


def experiment_name(domain: str) -> str:
    return f"coelho-{domain}-batch"


def registered_name(domain: str) -> str:
    return f"coelho-{domain}-batch"


def _mlflow(environ: Mapping[str, str] | None = None) -> Any:
    env = os.environ if environ is None else environ
    uri = env.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise RuntimeError("MLFLOW_TRACKING_URI is not set: where is MLflow? (coelho up starts it)")
    for key in ("MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        if env.get(key):
            os.environ[key] = env[key]  # the artifact store (boto3) reads the process environment
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow


def flat_metrics(result: StudyResult) -> dict[str, float]:
    """`<part>.<metric>` -> value, finite numbers only."""
    out: dict[str, float] = {}
    for part, values in result.metrics.items():
        for name, value in values.items():
            if value is not None and math.isfinite(float(value)):
                out[f"{part}.{name}"] = float(value)
    for kind, values in result.gap.items():
        for name, value in values.items():
            if value is not None:
                out[f"gap_{kind.removeprefix('vs_')}.{name}"] = float(value)
    for name, seconds in result.timings.items():
        out[f"time.{name}"] = float(seconds)
    return out


def own_types(pipeline: Any) -> list[str]:
    """The types skops (MLflow's sklearn serialisation) does not trust by default in `pipeline`: the study built and
    fitted it in this process, so its own types are trusted, and recorded with the model for its loaders."""
    import skops.io

    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)))


def log_study(result: StudyResult, environ: Mapping[str, str] | None = None) -> StudyResult:
    """Log `result` as one MLflow run and register its pipeline; sets `run_id` and `model_version`."""
    mlflow = _mlflow(environ)
    from mlflow.models import infer_signature

    mlflow.set_experiment(experiment_name(result.domain))
    example = result.input_example
    signature = infer_signature(example, result.pipeline.predict(example))
    params = {k: ("" if v is None else str(v))[:6000] for k, v in result.params.items()}
    name = f"{result.model}-v{result.params['table_version']}"
    with mlflow.start_run(run_name=name, tags={"coelho.domain": result.domain, "coelho.kind": "batch-study"}) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(flat_metrics(result))
        with tempfile.TemporaryDirectory() as tmp:
            plots = Path(tmp) / "plots"
            plots.mkdir()
            for figure, png in result.figures.items():
                (plots / f"{figure}.png").write_bytes(png)
            if result.figures:
                mlflow.log_artifacts(str(plots), "plots")
        result.run_id = run.info.run_id
        info = mlflow.sklearn.log_model(
            result.pipeline,
            name="model",
            signature=signature,
            input_example=example,
            registered_model_name=registered_name(result.domain),
            skops_trusted_types=own_types(result.pipeline),
        )
        result.model_version = int(info.registered_model_version) if info.registered_model_version else None
        mlflow.log_dict(result.summary(), "study.json")
        mlflow.set_tags({"coelho.model_version": str(result.model_version), "coelho.notes": " | ".join(result.notes)})
    return result


def _runs(domain: str, limit: int, environ: Mapping[str, str] | None = None) -> list[Any]:
    mlflow = _mlflow(environ)
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name(experiment_name(domain))
    if experiment is None:
        return []
    return (
        list(
            client.search_runs(
                [experiment.experiment_id],
                filter_string="attributes.status = 'FINISHED'",
                order_by=["attributes.start_time DESC"],
                max_results=limit,
            )
        )
        if mlflow
        else []
    )


def run_report(run: Any, client: Any) -> dict[str, Any]:
    """One study as `coelho batch report` shows it: params, metrics per part, gaps, figures."""
    data = run.data
    metrics: dict[str, dict[str, float]] = {}
    for key, value in data.metrics.items():
        part, _, name = key.partition(".")
        metrics.setdefault(part, {})[name] = value
    domain = data.tags.get("coelho.domain") or data.params.get("domain", "")
    figures = sorted(
        Path(a.path).stem for a in client.list_artifacts(run.info.run_id, "plots") if a.path.endswith(".png")
    )
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "domain": domain,
        "started": run.info.start_time,
        "model": data.params.get("model"),
        "model_version": data.tags.get("coelho.model_version"),
        "table_version": data.params.get("table_version"),
        "split_time": data.params.get("split_time"),
        "train_rows": data.params.get("train_rows"),
        "test_rows": data.params.get("test_rows"),
        "params": dict(data.params),
        "metrics": {part: metrics.get(part, {}) for part in PARTS},
        "gap": {"vs_progressive": metrics.get("gap_progressive", {}), "vs_frozen": metrics.get("gap_frozen", {})},
        "other_models": {k.removeprefix("batch."): v for k, v in metrics.items() if k.startswith("batch.")},
        "notes": [n for n in data.tags.get("coelho.notes", "").split(" | ") if n],
        "figures": figures,
        "missing_figures": sorted(set(FIGURES.get(_task(domain), ())) - set(figures)),
    }


def _task(domain: str) -> str:
    from eventing.domains import get_domain

    return get_domain(domain).task


def reports(domain: str, limit: int = 1, environ: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The latest `limit` finished studies of `domain`, newest first."""
    runs = _runs(domain, limit, environ)
    if not runs:
        return []
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    return [run_report(run, client) for run in runs]


def figure_png(run_id: str, figure: str, environ: Mapping[str, str] | None = None) -> bytes:
    """The PNG of one figure of a study's run."""
    _mlflow(environ)
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        path = MlflowClient().download_artifacts(run_id, f"plots/{figure}.png", tmp)
        return Path(path).read_bytes()


def metrics_table(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows metric | batch | River progressive | River frozen | gaps, the task's headline metrics first."""
    parts = report["metrics"]
    names: list[str] = []
    for part in PARTS:
        names += [n for n in parts.get(part, {}) if n not in names]
    headline = GAP_METRICS.get(_task(report["domain"]), ())
    names.sort(key=lambda n: (n not in headline, headline.index(n) if n in headline else 0, n))
    return [
        {
            "metric": name,
            "batch": parts.get("batch", {}).get(name),
            "online_progressive": parts.get("online_progressive", {}).get(name),
            "online_frozen": parts.get("online_frozen", {}).get(name),
            "gap_vs_progressive": report["gap"]["vs_progressive"].get(name),
            "gap_vs_frozen": report["gap"]["vs_frozen"].get(name),
        }
        for name in names
    ]


def format_report(report: Mapping[str, Any]) -> str:
    """The text `coelho batch report` prints for one study."""
    lines = [
        f"{report['domain']} study {report['run_name']} (run {report['run_id']}): {report['model']}, "
        f"registered version {report['model_version']}",
        f"table version {report['table_version']}, train {report['train_rows']} rows before "
        f"{report['split_time']}, test {report['test_rows']} rows",
        f"{'metric':<22}{'batch':>12}{'River prog.':>13}{'River frozen':>14}{'gap prog.':>12}{'gap frozen':>12}",
    ]

    def cell(value: Any, width: int) -> str:
        return f"{value:>{width}.4f}" if isinstance(value, int | float) else f"{'-':>{width}}"

    for row in metrics_table(report):
        lines.append(
            f"{row['metric']:<22}{cell(row['batch'], 12)}{cell(row['online_progressive'], 13)}"
            f"{cell(row['online_frozen'], 14)}{cell(row['gap_vs_progressive'], 12)}"
            f"{cell(row['gap_vs_frozen'], 12)}"
        )
    for name, values in report["other_models"].items():
        lines.append(f"other batch model {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(values.items())))
    lines += [f"note: {note}" for note in report["notes"]]
    lines.append(
        f"figures: {', '.join(report['figures']) or 'none'}"
        + (f" (missing: {', '.join(report['missing_figures'])})" if report["missing_figures"] else "")
    )
    return "\n".join(lines)


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)
