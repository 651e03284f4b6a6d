"""Signed model state against the real stack: a forged MLflow artifact of a registered version is never loaded.

A pickle that creates a file when loaded is uploaded as the `state.pkl.lz4` artifact of a newer registered version
than a genuine checkpoint. predict-one refuses to serve it frozen (4xx) and keeps answering from its live model;
learn-one, restoring an emptied Redis, skips it and restores the genuine version. The file is never created and
both refusals are counted (coelho_model_state_refused_total).
"""

from __future__ import annotations

import json
import pickle
import tempfile
from pathlib import Path
from typing import Any

import lz4.frame
import pytest
import redis
import requests

from eventing.domains import get_domain
from functions.model_state.replica import ModelReplica
from tests.functions.function_testkit import cloudevent, post
from tests.functions.streams import events
from tests.functions.test_functions_stack import deliver
from tests.functions.test_state_signing import Planted

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def stack(platform: Any) -> Any:
    platform.start(["redis", "learn", "predict", "checkpoint"], producers=False)
    return platform


def refused_total(url: str, source: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("coelho_model_state_refused_total{") and f'source="{source}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_forged_mlflow_artifact_is_refused_by_predict_and_restore(
    stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    settings = stack.settings
    for name, value in settings.function_env().items():
        monkeypatch.setenv(name, value)
    domain = get_domain("tfd")
    learn, predict = settings.url("learn"), settings.url("predict")
    session = requests.Session()
    for event in events("tfd", 30, seed=61):
        deliver([learn], cloudevent(domain.type("record"), event), session)
    response = post(
        settings.url("checkpoint"), cloudevent("com.coelho.realtime.checkpoint.requested", {"domain": "tfd"}), 120
    )
    assert response.status_code == 200, response.text
    genuine = json.loads(response.content)["checkpoints"][0]

    # The attacker: write access to MLflow and S3, not the key. A newer version whose artifact creates a file.
    target = tmp_path / "pwned"
    client = mlflow.tracking.MlflowClient(tracking_uri=settings.mlflow_uri)
    experiment = client.get_experiment_by_name("coelho-tfd")
    assert experiment is not None
    run = client.create_run(experiment.experiment_id, run_name="forged")
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(tmp) / "state.pkl.lz4"
        artifact.write_bytes(lz4.frame.compress(pickle.dumps(Planted(target), protocol=5)))
        client.log_artifact(run.info.run_id, str(artifact), "model")
    client.set_terminated(run.info.run_id)
    forged = client.create_model_version(
        "coelho-tfd",
        f"runs:/{run.info.run_id}/model",
        run_id=run.info.run_id,
        tags={"model": genuine["model"], "seq": str(genuine["seq"] + 5), "events_learned": "1"},
    )
    try:
        before_frozen = refused_total(predict, "frozen")
        answer = requests.post(
            f"{predict}/predict/tfd?version={forged.version}", json=events("tfd", 1, seed=62)[0], timeout=60
        )
        assert answer.status_code == 400, answer.text
        assert "refused" in answer.json()["error"]
        assert refused_total(predict, "frozen") == before_frozen + 1
        live = requests.post(f"{predict}/predict/tfd", json=events("tfd", 1, seed=63)[0], timeout=60)
        assert live.status_code == 200, live.text  # predict-one keeps serving its live model

        # Redis emptied: learn-one skips the forged version and restores the genuine one.
        r = redis.Redis.from_url(settings.redis_url)
        r.flushall()
        stack.restart("learn")
        restored = ModelReplica(r, domain, role="follower")
        assert restored.load_snapshot()
        assert (restored.state.seq, restored.state.events_learned) == (genuine["seq"], genuine["events_learned"])
        # A periodic checkpoint may have registered a newer genuine version of the same state meanwhile.
        restored_from = int(r.get(restored.mkey("restored_from")) or 0)
        assert restored_from != int(forged.version)
        assert restored_from >= int(genuine["version"])
        source = client.get_model_version("coelho-tfd", str(restored_from))
        assert source.run_id != run.info.run_id
        assert int(source.tags["seq"]) == genuine["seq"]
        assert refused_total(learn, "mlflow") >= 1
        reply = deliver([learn], cloudevent(domain.type("record"), events("tfd", 1, seed=64)[0]), session)
        assert reply["seq"] == genuine["seq"] + 1
        assert not target.exists()
    finally:
        client.delete_model_version("coelho-tfd", forged.version)
