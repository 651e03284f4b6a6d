"""A/B testing through crashes: a domain runs three live models (the champion's and two challengers, added with the
call `coelho models add` makes) while a steady load of records, some of them sent twice, goes through the Broker and
learn-one is killed with SIGKILL twice as it learns. Once the supervisor has brought it back and the load is
accounted for, each produced event is in the log exactly once and EVERY live model equals an in-process replay of
the log from where it was added: each model learned each event once, in order, whatever it was doing when the
process died (applying a request's event, catching up, writing a snapshot)."""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests

from coelho.runtime import Platform
from coelho.supervisor import RestartPolicy, Supervisor
from eventing.domains import get_domain
from functions.model_state import ab
from tests.faults.harness import DOMAIN, Load, live_models, log_head, model_equals_replay, run_scenario

pytestmark = [pytest.mark.stack, pytest.mark.faults]

POLICY = RestartPolicy(base=0.5, cap=4.0, interval=0.1)
CHALLENGERS = ("logreg", "hoeffding_adaptive_tree")
KILLS = 2
BACK_PATIENCE_S = 120.0  # failure bound only: the supervisor normally has learn-one back within seconds


@pytest.fixture(scope="module")
def supervised(platform: Platform) -> Iterator[Platform]:
    platform.start(["router", "learn"])
    sup = Supervisor(platform, POLICY)
    sup.start_thread()
    try:
        yield platform
    finally:
        sup.stop()


def _learning(platform: Platform, patience: float = BACK_PATIENCE_S) -> None:
    """Wait until learn-one runs and commits events again: the log's head moves."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline and not (
        platform.entries().get("learn", {}).get("phase", "running") == "running" and platform.healthy("learn")
    ):  # no phase before the first restart
        time.sleep(0.2)
    head = log_head(platform)
    while time.monotonic() < deadline:
        if log_head(platform) >= head + 5:
            return
        time.sleep(0.2)
    entry = platform.entries().get("learn", {})
    raise AssertionError(f"learn-one not learning again within {patience:.0f} s (head {head}): {entry}")


def test_every_live_model_learns_each_event_exactly_once_through_kill_9(supervised: Platform) -> None:
    client: Any = redis.Redis.from_url(supervised.settings.redis_url, socket_timeout=10)
    domain = get_domain(DOMAIN)
    for name in CHALLENGERS:  # what `coelho models add tfd NAME` runs
        added = ab.control(client, domain, {"action": "add", "model": name})
        assert added["live"], added
    live = live_models(supervised)
    assert len(live) == 1 + len(CHALLENGERS) and set(CHALLENGERS) <= set(live), live
    restarts_before = supervised.entries()["learn"].get("restarts", 0)
    duplicates: list[str] = []

    def kill_twice_with_duplicates(load: Load) -> None:
        session = requests.Session()
        for _ in range(KILLS):
            _learning(supervised)
            time.sleep(random.uniform(0.2, 1.0))
            supervised.kill("learn", signal.SIGKILL)
            for ident in random.sample(list(load.acknowledged), min(10, len(load.acknowledged))):
                offset = int(ident.rsplit("-", 1)[1])
                if load.post_until_taken(load.events(offset + 1)[offset], session):  # the same id again
                    duplicates.append(ident)
        _learning(supervised)

    result = run_scenario(
        supervised, "kill -9 learn, three live models", kill_twice_with_duplicates, before=3.0, after=4.0, settle=240.0
    )
    result.faults = KILLS
    print(json.dumps(dict(result.to_json(), duplicates_resent=len(duplicates), models=live)))
    assert supervised.entries()["learn"].get("restarts", 0) >= restarts_before + KILLS
    assert duplicates and result.produced > 0, result
    assert result.lost == 0 and result.learned_twice == 0 and result.dead_lettered == 0, result
    assert result.learned_once == result.produced, result
    assert live_models(supervised) == live  # the challengers survived the crashes
    replayed = {name: model_equals_replay(supervised, wait=180.0, model=name) for name in live}
    print(json.dumps({"model_equals_replay": replayed}))
    assert replayed == {name: True for name in live}, replayed
