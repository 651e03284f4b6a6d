"""`coelho checkpoint` asks for a checkpoint through the Broker: router -> checkpoint Trigger -> MLflow version."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from coelho.platform_commands import checkpoint
from eventing.domains import get_domain
from tests.functions.function_testkit import cloudevent
from tests.functions.streams import events

pytestmark = pytest.mark.stack


def _versions(mlflow_client: Any, name: str) -> set[str]:
    try:
        return {v.version for v in mlflow_client.search_model_versions(f"name='{name}'")}
    except Exception:  # the registered model does not exist yet
        return set()


def test_coelho_checkpoint_registers_a_version_through_the_broker(platform: Any) -> None:
    import mlflow

    platform.start(["redis", "learn", "checkpoint", "router"], producers=False)
    settings = platform.settings
    domain = get_domain("eta")
    session = requests.Session()
    for event in events("eta", 30, seed=61):
        response = session.post(settings.url("learn"), **_http(cloudevent(domain.type("record"), event)), timeout=10)
        assert response.status_code < 300, response.text
    mlflow_client = mlflow.tracking.MlflowClient(tracking_uri=settings.mlflow_uri)
    before = _versions(mlflow_client, "coelho-eta")

    result = CliRunner().invoke(checkpoint, ["eta"], env=settings.to_environ())
    assert result.exit_code == 0, result.output
    assert "checkpoint requested for eta" in result.output

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not (_versions(mlflow_client, "coelho-eta") - before):
        time.sleep(1)
    new = _versions(mlflow_client, "coelho-eta") - before
    assert new, "no new coelho-eta version was registered after `coelho checkpoint eta`"
    version = mlflow_client.get_model_version("coelho-eta", max(new, key=int))
    assert int(version.tags["events_learned"]) >= 30


def test_coelho_checkpoint_rejects_an_unknown_domain(platform: Any) -> None:
    result = CliRunner().invoke(checkpoint, ["weather"], env=platform.settings.to_environ())
    assert result.exit_code != 0
    assert "unknown domain 'weather'" in result.output


def _http(message: Any) -> dict[str, Any]:
    return {"data": message.body, "headers": dict(message.headers)}
