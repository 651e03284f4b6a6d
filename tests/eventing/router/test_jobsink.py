"""A Knative JobSink on the local router (eventing/router/jobsink.py): the manifests of knative/eventing/
batch-jobsink.yaml read as a routing table, one local process per event (the event in the file its environment
names, a redelivery starting none), and end to end: a batch.study.requested event posted to the Broker ingress by
`coelho batch train --via-broker` runs `python -m functions.batch.job`, whose study appears in MLflow."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from eventing.cloudevent_types import BATCH_STUDY_REQUESTED
from eventing.router.event import WireEvent
from eventing.router.jobsink import EVENT_PATH_ENV, JobSink, LocalJobSink
from eventing.router.manifests import Manifests
from eventing.router.testing import ce_headers, unique_namespace
from tests.eventing.router.harness import broker, running_router

MANIFEST = Path(__file__).resolve().parents[3] / "knative" / "eventing" / "batch-jobsink.yaml"


def batch_documents(namespace: str) -> list[dict[str, Any]]:
    """The JobSink and Trigger of knative/eventing/batch-jobsink.yaml, in `namespace`."""
    docs = [copy.deepcopy(d) for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return docs


def test_the_jobsink_and_its_trigger_are_read_as_routing() -> None:
    manifests = Manifests.from_documents([broker("coelho", {}), *batch_documents("coelho")])
    job = manifests.job_sinks[("coelho", "coelho-batch-study")]
    assert job.command == ("python", "-m", "functions.batch.job")
    assert job.env["COELHO_BATCH_THREADS"] == "2" and "AWS_ACCESS_KEY_ID" not in job.env  # secrets are the cluster's
    trigger = manifests.triggers[("coelho", "batch-study")]
    assert (trigger.subscriber.kind, trigger.subscriber.name) == ("JobSink", "coelho-batch-study")
    assert trigger.filter_attributes == {"type": BATCH_STUDY_REQUESTED}


@pytest.mark.process
def test_each_event_runs_one_job_with_the_event_in_a_file(tmp_path: Path) -> None:
    out = tmp_path / "seen"
    copy_event = "import os, shutil, sys; shutil.copy(os.environ[sys.argv[1]], os.environ['OUT'] + '-' + sys.argv[2])"
    sink = JobSink("ns", "copier", ("python", "-c", copy_event, EVENT_PATH_ENV, "x"), {"OUT": str(out)})
    server = LocalJobSink(sink, "127.0.0.1", tmp_path / "jobs", {})
    server.start()
    try:
        body = json.dumps({"domain": "eta", "rows": 500}).encode()
        first = requests.post(server.url, headers=ce_headers(BATCH_STUDY_REQUESTED, "e-1"), data=body, timeout=10)
        again = requests.post(server.url, headers=ce_headers(BATCH_STUDY_REQUESTED, "e-1"), data=body, timeout=10)
        other = requests.post(server.url, headers=ce_headers(BATCH_STUDY_REQUESTED, "e-2"), data=body, timeout=10)
        assert [r.status_code for r in (first, again, other)] == [202, 202, 202]
        assert first.headers["Location"] == again.headers["Location"] != other.headers["Location"]
        assert server.started == 2 and len(server.jobs) == 2  # the redelivery of e-1 started no second job
        for proc in server.jobs.values():
            assert proc.wait(timeout=60) == 0
        event = json.loads(Path(f"{out}-x").read_text())
        assert event["type"] == BATCH_STUDY_REQUESTED and event["data"] == {"domain": "eta", "rows": 500}
        assert event["id"] in ("e-1", "e-2") and event["source"] == "/tests/router"
        bad = requests.post(server.url, headers={"content-type": "application/json"}, data=body, timeout=10)
        assert bad.status_code == 400 and server.started == 2
    finally:
        server.stop()
    event = WireEvent.from_http(ce_headers(BATCH_STUDY_REQUESTED, "e-1"), body)
    job_dir = tmp_path / "jobs" / "ns-copier"
    assert sorted(p.name for p in job_dir.iterdir()) == sorted(server.jobs)
    assert all((job_dir / name / "exit_code").read_text().strip() == "0" for name in server.jobs)
    assert json.loads((job_dir / sorted(server.jobs)[0] / "event").read_text())["specversion"] == event.get(
        "specversion"
    )


def _finished_run(tracking_uri: str, domain: str, event_id: str, timeout: float) -> Any:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        experiment = client.get_experiment_by_name(f"coelho-{domain}-batch")
        if experiment is not None:
            for run in client.search_runs([experiment.experiment_id]):
                if run.data.params.get("requested_by", "").endswith(f"#{event_id}") and run.info.status == "FINISHED":
                    return run
        time.sleep(2)
    return None


@pytest.mark.stack
def test_a_study_request_through_the_broker_runs_a_job_logged_in_mlflow(
    platform: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coelho.services import s3_client
    from tests.functions.batch_lake import write_lake

    platform.start(["kafka", "s3", "mlflow"], producers=False)
    settings = platform.settings
    bucket = f"jobsink-test-{uuid.uuid4().hex[:10]}"
    s3_client(settings).make_bucket(bucket)
    monkeypatch.setenv("COELHO_LAKE_BUCKET", bucket)  # the router's jobs inherit it, as a pod its ConfigMap's
    write_lake("eta", 1200, 7, {**settings.function_env(), "COELHO_LAKE_BUCKET": bucket}, commits=2)
    ns = unique_namespace("jobsink")
    with running_router(settings, ns, [broker(ns, {}), *batch_documents(ns)], tmp_path, {}) as router:
        ingress = f"{router.settings.broker_url}/{ns}/default"
        env = {**os.environ, **settings.to_environ()}
        out = subprocess.run(
            [sys.executable, "-c", "from coelho.cli import main; main()", "batch", "train", "eta"]
            + ["--version", "2", "--no-online", "--via-broker", "--broker", ingress],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert out.stdout.startswith(BATCH_STUDY_REQUESTED), out.stdout
        event_id = out.stdout.split()[1]
        run = _finished_run(settings.mlflow_uri, "eta", event_id, timeout=600)
        jobs = list((router.settings.run_dir / "jobsinks" / f"{ns}-coelho-batch-study").iterdir())
        logs = "\n".join((j / "job.log").read_text() for j in jobs if (j / "job.log").exists())
        assert run is not None, f"no finished study run for event {event_id}; job output:\n{logs[-3000:]}"
        assert run.data.params["table_version"] == "2" and run.data.params["domain"] == "eta"
        assert len(jobs) == 1 and "registered coelho-eta-batch version" in logs
        # a request that cannot make a study: its job ends with exit code 2 and logs no run
        refused = subprocess.run(
            [sys.executable, "-c", "from coelho.cli import main; main()", "batch", "train", "eta"]
            + ["--version", "99", "--via-broker", "--broker", ingress],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        refused_id = refused.stdout.split()[1]
        deadline = time.monotonic() + 300
        codes: list[str] = []
        while time.monotonic() < deadline:
            jobs = list((router.settings.run_dir / "jobsinks" / f"{ns}-coelho-batch-study").iterdir())
            codes = [(j / "exit_code").read_text().strip() for j in jobs if (j / "exit_code").exists()]
            if len(codes) == 2:
                break
            time.sleep(1)
        assert sorted(codes) == ["0", "2"]
        assert _finished_run(settings.mlflow_uri, "eta", refused_id, timeout=1) is None
