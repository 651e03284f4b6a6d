"""Promises of the functions an audit found untested, against the real function processes and Redis.

- metrics: each domain's live metrics (the summary learn-one keeps in Redis, what `coelho models --json` and the
  dashboard read) hold exactly the metric set below, with real values after learning;
- failure contract: MLflow down -> checkpoint answers 503 (retryable), never a 2xx; Redis down -> predict-one
  answers 503 once its models can no longer be kept fresh;
- checkpointing never pauses learning: while a checkpoint is stuck in MLflow, learn-one keeps answering and
  committing events;
- drift: a drift detected by learn-one is posted to BROKER_URL as a `<domain>.drift` CloudEvent.
"""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

import producers
from eventing.domains import DOMAINS, get_domain
from eventing.domains.ecci import PROFILE_FIELDS
from functions.model_state.event_log import EventLog
from functions.model_state.keys import model_key
from functions.model_state.replica import models_for
from tests.functions.function_testkit import cloudevent, free_port, function_env, function_process, post
from tests.functions.streams import events

pytestmark = pytest.mark.stack

# The metrics kept with each domain's model state, under the names the summary uses.
EXPECTED_METRICS = {
    "tfd": {
        "Accuracy",
        "Precision",
        "Recall",
        "F1",
        "FBeta(2)",
        "BalancedAccuracy",
        "MCC",
        "GeometricMean",
        "CohenKappa",
        "Jaccard",
        "ROCAUC",
        "RollingROCAUC",
        "LogLoss",
        "ConfusionMatrix",
        "ClassificationReport",
    },
    "eta": {"MAE", "RMSE", "MAPE", "SMAPE", "R2", "RMSLE", "RollingMAE", "TimeRollingMAE"},
    "ecci": {"Silhouette", "RollingSilhouette"},
}
LEARNED = 400  # events per domain for the metric test


@pytest.fixture(scope="module")
def stack(platform: Any) -> Any:
    platform.start(["redis", "learn", "predict", "checkpoint"], producers=False)
    return platform


class Recorder(ThreadingHTTPServer):
    """A local HTTP server that records every POST (headers, body) and answers 202, like the Broker ingress.
    With `hold` set, each request first waits for `release` (a stuck dependency) and then answers `status`."""

    daemon_threads = True

    def __init__(self, status: int = 202, hold: bool = False) -> None:
        self.received: list[tuple[str, str, dict[str, str], bytes]] = []
        self.status = status
        self.hold = hold
        self.arrived = threading.Event()
        self.release = threading.Event()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.received.append(
                    (self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                recorder.arrived.set()
                if recorder.hold:
                    recorder.release.wait(60)
                payload = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "stand-in"}'
                self.send_response(recorder.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_PUT = _answer  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


def summary_after(client: redis.Redis, domain: str, model: str, seq: int) -> dict[str, Any]:
    """The live summary learn-one keeps for `model`, once it covers log position `seq`."""
    deadline = time.monotonic() + 15
    while True:
        raw = client.hget(model_key(domain, model, "summary"), "json")
        summary = json.loads(raw) if raw else {}
        if summary.get("seq", 0) >= seq:
            return summary
        assert time.monotonic() < deadline, f"{domain}/{model}: summary at {summary.get('seq')}, expected {seq}"
        time.sleep(0.1)


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# --- 1. the metric set of each domain ----------------------------------------------------------------
def check_metric_set(domain: str, summary: dict[str, Any]) -> None:
    metrics = summary["metrics"]
    assert set(metrics) == EXPECTED_METRICS[domain], f"{domain}: {sorted(metrics)}"
    if domain == "tfd":
        for name in EXPECTED_METRICS["tfd"] - {"ConfusionMatrix", "ClassificationReport"}:
            assert finite(metrics[name]), (name, metrics[name])
        matrix = metrics["ConfusionMatrix"]
        assert sum(n for row in matrix.values() for n in row.values()) == summary["events_learned"]
        assert set(matrix) <= {"True", "False"} and "True" in matrix and "False" in matrix, matrix
        report = metrics["ClassificationReport"]
        assert isinstance(report, str) and "Precision" in report and "Recall" in report, report
        p, r = metrics["Precision"], metrics["Recall"]
        assert metrics["FBeta(2)"] == pytest.approx(5 * p * r / (4 * p + r) if p + r else 0.0), "FBeta is not beta=2"
    elif domain == "eta":
        for name in EXPECTED_METRICS["eta"]:
            assert finite(metrics[name]), (name, metrics[name])
        assert metrics["RMSE"] >= metrics["MAE"] > 0
    else:
        for name in EXPECTED_METRICS["ecci"]:
            assert finite(metrics[name]), (name, metrics[name])
        assert isinstance(summary["n_clusters"], int) and summary["n_clusters"] >= 1, summary["n_clusters"]
        assert isinstance(summary["n_micro_clusters"], int) and summary["n_micro_clusters"] >= summary["n_clusters"]
        clusters = summary["clusters"]
        assert clusters, "no per-cluster profile"
        assert 0 < sum(c["samples"] for c in clusters.values()) <= summary["events_learned"]
        # samples per cluster and the distribution of each main feature (a cluster may never have seen an optional one)
        assert {name for profile in clusters.values() for name in profile} == {"samples", *PROFILE_FIELDS}
        for profile in clusters.values():
            assert profile["samples"] > 0
            for name in set(profile) & set(PROFILE_FIELDS):
                dist = profile[name]
                if name in ("price", "time_on_page_seconds"):
                    assert set(dist) == {"mean", "std", "min", "max"} and dist["min"] <= dist["mean"] <= dist["max"]
                else:
                    assert dist and all(0 < share <= 1 for share in dist.values()), (name, dist)
                    assert sum(dist.values()) <= 1 + 0.0005 * len(dist) + 1e-9  # shares rounded to 3 places


def test_live_metrics_are_exactly_the_expected_set(stack: Any) -> None:
    from click.testing import CliRunner

    from coelho.models_command import models

    client = redis.Redis.from_url(stack.settings.redis_url)
    learn = stack.settings.url("learn")
    session = requests.Session()
    for name, domain in DOMAINS.items():
        last = 0
        for i, event in enumerate(events(name, LEARNED, seed=81)):
            message = cloudevent(domain.type("record"), event, ce_id=f"gap-metrics-{name}-{i}")
            response = session.post(learn, data=message.body, headers=dict(message.headers), timeout=10)
            assert response.status_code == 200, response.text
            last = max(last, json.loads(response.content)["seq"])
        for model in models_for(domain):
            summary = summary_after(client, name, model, last)
            assert summary["events_learned"] >= LEARNED
            check_metric_set(name, summary)
    # What `coelho models --json` shows is read from that same state: the main metrics and, for ecci, the clusters.
    rows = json.loads(CliRunner().invoke(models, ["--json"], env=function_env(stack.settings, "learn")).output)
    for row in rows:
        domain = get_domain(row["domain"])
        assert set(row["metrics"]) == set(domain.main_metrics) <= EXPECTED_METRICS[domain.name]
        assert all(finite(v) for v in row["metrics"].values()), row
        assert row["events_learned"] >= LEARNED
        assert ("n_clusters" in row) is (domain.name == "ecci")


# --- 2. failure contract: MLflow down, Redis down --------------------------------------------------------
def test_checkpoint_with_mlflow_down_answers_503(stack: Any, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with function_process(stack.settings, "checkpoint", tmp_path, MLFLOW_TRACKING_URI=closed) as url:
        response = post(url, cloudevent("com.coelho.realtime.checkpoint.requested", {"domain": "tfd"}), timeout=180)
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert "retry" in error and "MLflow unavailable" in error, error


def test_checkpointing_never_pauses_learning(stack: Any, tmp_path: Path) -> None:
    """A checkpoint stuck in MLflow (a stand-in that holds every request) while learn-one takes events."""
    domain = get_domain("tfd")
    learn = stack.settings.url("learn")
    client = redis.Redis.from_url(stack.settings.redis_url)
    with (
        Recorder(status=503, hold=True) as mlflow,
        function_process(stack.settings, "checkpoint", tmp_path, MLFLOW_TRACKING_URI=mlflow.url) as url,
    ):
        answer: dict[str, Any] = {}
        done = threading.Event()

        def checkpoint() -> None:
            message = cloudevent("com.coelho.realtime.checkpoint.requested", {"domain": "tfd"})
            answer["response"] = post(url, message, timeout=180)
            done.set()

        worker = threading.Thread(target=checkpoint)
        worker.start()
        assert mlflow.arrived.wait(60), "the checkpoint never reached MLflow"
        session = requests.Session()
        replies = []
        for i, event in enumerate(events("tfd", 40, seed=83)):
            message = cloudevent(domain.type("record"), event, ce_id=f"gap-ckpt-{i}", partitionkey=event["user_id"])
            response = session.post(learn, data=message.body, headers=dict(message.headers), timeout=10)
            assert response.status_code == 200, response.text
            replies.append(json.loads(response.content))
        in_progress = not done.is_set()
        head = EventLog(client, domain).head()
        mlflow.release.set()
        worker.join(180)
    assert in_progress, "the checkpoint ended before the events were sent: nothing was tested"
    seqs = [r["seq"] for r in replies]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and head >= seqs[-1]  # committed, in order
    for reply in replies:
        assert reply["duplicate"] is False and reply["paused"] is False
        assert all(m["applied"] and m["learned"] for m in reply["models"]), reply
    assert answer["response"].status_code == 503, answer["response"].text  # and the stuck checkpoint is not a 2xx


def test_predict_with_redis_down_answers_503(stack: Any) -> None:
    domain = get_domain("tfd")
    predict = stack.settings.url("predict")
    probe = events("tfd", 1, seed=85)[0]

    def ask() -> requests.Response:
        return post(predict, cloudevent(domain.type("prediction.requested"), probe), timeout=20)

    assert ask().status_code == 200
    stack.kill("redis")
    try:
        deadline = time.monotonic() + 30
        while (response := ask()).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.5)  # answered from memory until STALE_AFTER_S without Redis
        assert response.status_code == 503, response.text
        assert "retry" in response.json()["error"], response.text
    finally:
        stack.restart("redis")
    deadline = time.monotonic() + 30
    while (response := ask()).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert response.status_code == 200, response.text  # and serves again once Redis is back


# --- 4. a detected drift becomes a drift CloudEvent on the Broker ------------------------------------------
DRIFT_AT = 2000  # eta, seed 2: detected at record 2056 (tests/observability/test_producer_drift.py, bench/drift.py)


def test_detected_drift_is_posted_as_a_drift_cloudevent(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from functions import learn

    domain = get_domain("eta")
    stream = [domain.validate(r) for r in producers.records("eta", 2300, seed=2, drift_at=DRIFT_AT)]
    with Recorder() as broker:
        monkeypatch.setenv("BROKER_URL", broker.url + "/coelho/default")
        app = learn.create()
        web = app.test_client()
        drifted_at = []
        for i, event in enumerate(stream):
            message = cloudevent(domain.type("record"), event, ce_id=f"drift-{i}", partitionkey=event["driver_id"])
            response = web.post("/", headers=dict(message.headers), data=message.body)
            assert response.status_code == 200, response.data
            if any(m["drift"] for m in response.get_json()["models"]):
                drifted_at.append(response.get_json()["seq"])
        assert drifted_at and all(seq > DRIFT_AT for seq in drifted_at), drifted_at
        deadline = time.monotonic() + 10
        while len(broker.received) < len(drifted_at) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(broker.received) == len(drifted_at), broker.received
    markers: list[bytes] = redis.Redis.from_url(redis_url).zrange(  # type: ignore[assignment]
        model_key("eta", domain.default_model, "drift"), 0, -1
    )
    for (method, path, headers, body), seq in zip(broker.received, drifted_at, strict=True):
        assert (method, path) == ("POST", "/coelho/default")
        assert headers["ce-specversion"] == "1.0" and headers["ce-id"]
        assert headers["ce-type"] == "com.coelho.realtime.eta.drift"
        assert headers["ce-source"] == "/coelho/functions/learn/eta"
        assert headers["ce-domain"] == "eta"
        data = json.loads(body)
        assert data == {
            "domain": "eta",
            "model": domain.default_model,
            "seq": seq,
            "events_learned": seq,
            "drifts": drifted_at.index(seq) + 1,
        }
        assert any(json.loads(m)["seq"] == seq for m in markers)  # the same drift the dashboard marks
