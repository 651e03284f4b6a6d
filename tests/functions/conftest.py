"""Fixtures of the function tests: a throwaway Redis for the state-store tests. Helpers (CloudEvent messages,
function processes) are in function_testkit.py, seeded event streams in streams.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.functions.function_testkit import throwaway_redis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on a free port: its URL."""
    with throwaway_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture()
def redis_url(redis_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The private Redis, emptied, and REDIS_URL pointing at it."""
    redis.Redis.from_url(redis_server).flushall()
    monkeypatch.setenv("REDIS_URL", redis_server)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return redis_server


@pytest.fixture(autouse=True)
def _stop_learners(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Learners a test creates (learn.create()) stop watching Redis when it ends, so a later test's Redis is its own."""
    from functions import learn

    created: list[learn.Learner] = []

    class StoppedAfterTheTest(learn.Learner):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            created.append(self)

    monkeypatch.setattr(learn, "Learner", StoppedAfterTheTest)
    yield
    for learner in created:
        learner.stop()
