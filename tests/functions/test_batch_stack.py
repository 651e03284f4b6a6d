"""Batch studies against the platform's real S3 store and MLflow: a small lake of seeded producer events (the lake
function's rows and store, in three commits; tfd with delayed labels in its labels table), one study per domain,
its run, figures and registered model; the report; the model loaded in a fresh process; bad inputs refused before
any run exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from functions.batch.dataset import StudyError
from functions.batch.diagnostics import FIGURES
from functions.batch.report import experiment_name, log_study, reports
from functions.batch.study import StudyResult, run_study
from tests.functions.batch_lake import write_lake

pytestmark = pytest.mark.stack

COUNTS = {"tfd": 5000, "eta": 2000, "ecci": 2000}
SEED = 7
PNG = b"\x89PNG\r\n\x1a\n"


def _bucket(settings: Any) -> str:
    from coelho.services import s3_client

    name = f"batch-test-{uuid.uuid4().hex[:10]}"
    s3_client(settings).make_bucket(name)
    return name


@pytest.fixture(scope="module")
def lake(platform: Any) -> Iterator[dict[str, Any]]:
    platform.start(["s3", "mlflow"], producers=False)
    env = {**platform.settings.function_env(), "COELHO_LAKE_BUCKET": _bucket(platform.settings)}
    versions = {d: write_lake(d, n, SEED, env, delayed_labels=d == "tfd") for d, n in COUNTS.items()}
    yield {"env": env, "versions": versions, "settings": platform.settings}


@pytest.fixture(scope="module")
def studies(lake: dict[str, Any]) -> dict[str, StudyResult]:
    out = {}
    for domain in COUNTS:
        result = run_study(domain, environ=lake["env"], truth_seed=SEED if domain == "ecci" else None)
        out[domain] = log_study(result, lake["env"])
    return out


def finished_runs(env: dict[str, str], domain: str) -> int:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(experiment_name(domain))
    return 0 if experiment is None else len(client.search_runs([experiment.experiment_id]))


@pytest.mark.parametrize("domain", list(COUNTS))
def test_a_study_logs_its_run_figures_and_model(
    studies: dict[str, StudyResult], lake: dict[str, Any], domain: str
) -> None:
    result = studies[domain]
    assert result.run_id and result.model_version and result.model_version >= 1
    assert result.params["table_version"] == 3 and result.params["split_index"] == result.params["train_rows"]
    assert set(result.figures) == set(FIGURES[result.task])
    assert all(png.startswith(PNG) and len(png) > 5000 for png in result.figures.values())
    (report,) = reports(domain, 1, lake["env"])
    assert report["run_id"] == result.run_id and report["missing_figures"] == []
    assert set(report["figures"]) == set(FIGURES[result.task])
    assert report["metrics"]["batch"] and report["metrics"]["online_progressive"] and report["gap"]["vs_progressive"]


def test_tfd_batch_learns_fraud_and_is_compared_with_river(studies: dict[str, StudyResult]) -> None:
    result = studies["tfd"]
    assert result.params["labels_version"] == 3  # every target came from the labels table
    assert result.metrics["batch"]["roc_auc"] > 0.75
    assert result.metrics["online_progressive"]["roc_auc"] is not None
    assert set(result.gap["vs_progressive"]) == {"roc_auc", "log_loss"}


def test_eta_and_ecci_gaps(studies: dict[str, StudyResult]) -> None:
    assert studies["eta"].metrics["batch"]["mae"] < studies["eta"].metrics["batch.ridge"]["mae"] * 1.5
    assert studies["eta"].gap["vs_frozen"]["mae"] is not None
    ecci = studies["ecci"]
    assert (
        ecci.metrics["batch"]["ari"] is not None and ecci.metrics["batch"]["ari"] > 0.15
    )  # well above chance (0): the segments were matched
    assert ecci.gap["vs_progressive"]["silhouette"] is not None and 2 <= ecci.params["k"] <= 8


def test_the_cli_report_and_the_model_in_a_fresh_process(studies: dict[str, StudyResult], lake: dict[str, Any]) -> None:
    env = {**os.environ, **lake["settings"].to_environ(), **lake["env"]}
    out = subprocess.run(
        [sys.executable, "-c", "from coelho.cli import main; main()", "batch", "report", "tfd", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(out.stdout)
    assert report["run_id"] == studies["tfd"].run_id
    assert report["table"][0]["metric"] == "roc_auc" and report["table"][0]["batch"] > 0.75
    load = (
        "import json, sys, mlflow, pandas as pd\n"
        f"model = mlflow.sklearn.load_model('models:/coelho-tfd-batch/{studies['tfd'].model_version}')\n"
        "rows = pd.DataFrame(json.loads(sys.stdin.read()))\n"
        "print(json.dumps(model.predict_proba(rows)[:, 1].tolist()))\n"
    )
    example = studies["tfd"].input_example.to_json(orient="records")
    out = subprocess.run(
        [sys.executable, "-c", load], input=example, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    probabilities = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(probabilities) == 5 and all(0 <= p <= 1 for p in probabilities)


def test_bad_inputs_are_refused_before_any_run(lake: dict[str, Any], studies: dict[str, StudyResult]) -> None:
    env = lake["env"]
    before = finished_runs(env, "eta")
    before_tfd = finished_runs(env, "tfd")
    with pytest.raises(StudyError, match="has no version 99: its versions are 0 to 3"):
        run_study("eta", version=99, environ=env)
    with pytest.raises(StudyError, match="is empty at version 0"):
        run_study("eta", version=0, environ=env)  # the empty table as created
    with pytest.raises(StudyError, match="a study needs at least 200"):
        run_study("eta", rows=50, environ=env)
    with pytest.raises(StudyError, match="unknown batch model"):
        run_study("eta", model="nope", environ=env)
    small = {**env, "COELHO_LAKE_BUCKET": _bucket(lake["settings"])}
    with pytest.raises(StudyError, match="no Delta table"):
        run_study("eta", environ=small)
    write_lake("eta", 120, SEED, small, commits=1)
    with pytest.raises(StudyError, match="has 120 usable rows: a study needs at least 200"):
        run_study("eta", environ=small)
    write_lake("tfd", 400, SEED, small, commits=1, delayed_labels=True, kinds=("record",))  # labels never came
    with pytest.raises(StudyError, match="no row with its target"):
        run_study("tfd", environ=small)
    with pytest.raises(StudyError, match="has no version 7"):
        run_study("tfd", version=7, environ=env)
    untargeted = {**env, "COELHO_LAKE_BUCKET": _bucket(lake["settings"])}
    _write_without_target("tfd", untargeted)
    with pytest.raises(StudyError, match="has no target column 'is_fraud'"):
        run_study("tfd", environ=untargeted)
    assert finished_runs(env, "eta") == before
    assert finished_runs(env, "tfd") == before_tfd


def _write_without_target(domain: str, environ: dict[str, str]) -> None:
    """A records table of the domain whose schema lacks the target column (written by another tool)."""
    from deltalake import write_deltalake

    from functions.lake.rows import arrow_table, lake_table
    from functions.lake.service import uri_of
    from functions.lake.tables import storage_options
    from tests.functions.batch_lake import lake_rows

    table = lake_table(domain, "record")
    rows = [r for r in lake_rows(domain, 400, SEED) if r.table.kind == "record"]
    arrow = arrow_table(table, rows)
    arrow = arrow.drop_columns(["is_fraud"])
    write_deltalake(uri_of(table, environ), arrow, storage_options=storage_options(environ))


def _cli(lake: dict[str, Any], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **lake["settings"].to_environ(), **lake["env"]}
    return subprocess.run(
        [sys.executable, "-c", "from coelho.cli import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=check,
    )


def test_coelho_batch_train_through_the_cli(lake: dict[str, Any], studies: dict[str, StudyResult]) -> None:
    before = finished_runs(lake["env"], "eta")
    out = _cli(lake, "batch", "train", "eta", "--version", "2", "--no-online", "--json")
    summary = json.loads(out.stdout)
    assert summary["params"]["table_version"] == 2 and summary["run_id"] and summary["model_version"] >= 2
    assert "online comparison skipped" in summary["notes"] and summary["metrics"]["batch"]["mae"] > 0
    assert "registered coelho-eta-batch version" in out.stderr  # the progress lines, on stderr with --json
    assert finished_runs(lake["env"], "eta") == before + 1
    refused = _cli(lake, "batch", "train", "eta", "--version", "99", check=False)
    assert refused.returncode == 1 and "has no version 99: its versions are 0 to 3" in refused.stderr
    assert finished_runs(lake["env"], "eta") == before + 1


@pytest.fixture(scope="module")
def served(platform: Any, lake: dict[str, Any], studies: dict[str, StudyResult]) -> str:
    """predict-one on an empty tfd state: whatever earlier tests left running that feeds or holds tfd's models (the
    router, producers, learn-one, checkpoint) is stopped first, so the log below is the only one tfd sees."""
    from tests.functions.function_testkit import empty_domain

    feeders = ["router", *(name for name in platform.entries() if name.startswith("producer_"))]
    platform.stop([*feeders, "learn", "predict", "checkpoint"])
    platform.start(["redis"], producers=False)
    empty_domain(platform.settings, "tfd")
    platform.start(["predict"], producers=False)
    return str(platform.settings.url("predict"))


def test_predict_one_serves_the_batch_model_frozen(
    served: str, studies: dict[str, StudyResult], lake: dict[str, Any]
) -> None:
    import pandas as pd
    import requests

    from eventing.domains import get_domain
    from tests.functions.function_testkit import cloudevent, post
    from tests.functions.streams import events

    domain = get_domain("tfd")
    study = studies["tfd"]
    probes = events("tfd", 5, seed=123)
    columns = list(study.pipeline.feature_names_in_)
    expected = study.pipeline.predict_proba(pd.DataFrame([domain.features(p) for p in probes])[columns])[:, 1]
    for probe, probability in zip(probes, expected, strict=True):
        answer = requests.post(f"{served}/predict/tfd?model=batch", json=probe, timeout=120).json()
        assert (answer["model"], answer["frozen"], answer["seq"]) == ("batch", True, 0), answer
        assert answer["version"] >= study.model_version
        assert answer["events_learned"] == study.params["train_rows"] or answer["version"] > study.model_version
        pinned = requests.post(
            f"{served}/predict/tfd?model=batch&version={study.model_version}", json=probe, timeout=120
        ).json()
        assert pinned["version"] == study.model_version and pinned["events_learned"] == study.params["train_rows"]
        assert pinned["fraud_probability"] == pytest.approx(float(probability), rel=1e-9)
    # the CloudEvent extensions choose the same way
    message = cloudevent(
        domain.type("prediction.requested"), probes[0], model="batch", modelversion=str(study.model_version)
    )
    reply = post(served, message, timeout=120)
    assert reply.status_code == 200 and reply.json()["version"] == study.model_version
    missing = requests.post(f"{served}/predict/tfd?model=batch&version=999", json=probes[0], timeout=120)
    assert missing.status_code == 400 and "coelho-tfd-batch has no version 999" in missing.text


def test_the_batch_model_is_compared_with_the_live_models(
    served: str, studies: dict[str, StudyResult], lake: dict[str, Any], platform: Any
) -> None:
    import redis

    from eventing.domains import get_domain
    from functions.model_state import ab
    from functions.model_state.event_log import LogEntry
    from functions.model_state.replica import sync_replicas
    from tests.functions.streams import events

    domain = get_domain("tfd")
    client: Any = redis.Redis.from_url(platform.settings.redis_url)
    ab.live_models(client, domain, ["logreg_rus"])
    process = sync_replicas(client, domain, "learner", [])
    stream = events("tfd", 400, seed=55)
    for i, event in enumerate(stream):
        log = process[0].log
        appended = log.append("record", event, log.dedup_keys("/coelho/tests", f"batch-ab-{i}", event, "record"))
        for replica in process:
            replica.learn_committed(LogEntry(appended.seq, "record", event, appended.t_ms), appended.paused_at)
    for replica in process:
        replica.write_summary()  # flushes the paired outcomes
    version = studies["tfd"].model_version
    out = _cli(lake, "models", "compare", "tfd", "--batch", str(version), "--json")
    result = json.loads(out.stdout)
    assert result["frozen"] == [f"batch v{version}"]
    (pair,) = [p for p in result["pairs"] if p.get("frozen")]
    assert pair["a"] == "logreg_rus" and pair["b"] == f"batch v{version}"
    assert pair["n"] == len(stream) and pair["verdict"]  # every event the live model was scored on
    text = _cli(lake, "models", "compare", "tfd", "--batch").stdout
    assert "B=batch v" in text
