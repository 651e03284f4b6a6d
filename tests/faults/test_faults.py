"""The fastest fault scenarios, with hard assertions: under a steady load of records through the Broker, nothing is
lost and nothing is learned twice when learn-one or the router is killed with SIGKILL (the supervisor brings them
back), when every event is delivered twice, or when poison events are mixed in (they are refused with a 4xx or
dead-lettered with their reason). bench/faults.py runs every scenario, longer, and prints the table.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import pytest
import requests

from coelho.runtime import Platform
from coelho.supervisor import RestartPolicy, Supervisor
from tests.faults.harness import Load, Result, dead_letters, record_event, run_scenario

pytestmark = [pytest.mark.stack, pytest.mark.faults]

POLICY = RestartPolicy(base=0.5, cap=4.0, interval=0.1)


@pytest.fixture(scope="module")
def supervised(platform: Platform) -> Iterator[Platform]:
    platform.start(["router", "learn"])
    sup = Supervisor(platform, POLICY)
    sup.start_thread()
    try:
        yield platform
    finally:
        sup.stop()


def _clean(result: Result) -> None:
    print(json.dumps(result.to_json()))
    assert result.produced > 0, result
    assert result.lost == 0 and result.learned_twice == 0, result
    assert result.learned_once + result.dead_lettered == result.produced, result


@pytest.mark.parametrize("service", ["learn", "router"])
def test_kill_9_loses_nothing_and_learns_nothing_twice(supervised: Platform, service: str) -> None:
    result = run_scenario(
        supervised, f"kill -9 {service}", lambda load: supervised.kill(service, signal.SIGKILL), settle=240.0
    )
    _clean(result)
    assert result.dead_lettered == 0, result.reasons
    assert supervised.status()[service].restarts >= 1


def test_duplicate_deliveries_are_learned_once(supervised: Platform) -> None:
    def duplicate(load: Load) -> None:
        session = requests.Session()
        for ident in list(load.acknowledged):
            offset = int(ident.rsplit("-", 1)[1])
            assert load.post_until_taken(load.events(offset + 1)[offset], session)  # the same id, again

    _clean(run_scenario(supervised, "duplicates", duplicate, after=3.0))


def test_poison_events_are_refused_or_dead_lettered_and_nothing_else_is_lost(supervised: Platform) -> None:
    posted: dict[str, int] = {}

    def poison(load: Load) -> None:
        invalid = record_event(f"{load.tag}-poison-invalid", {"amount": "not a number"})
        undecodable = record_event(f"{load.tag}-poison-undecodable", {})
        undecodable = type(undecodable)(undecodable.attributes, b"\xff\xfe not json")
        oversized = record_event(f"{load.tag}-poison-oversized", {"blob": "x" * (12 * 1024 * 1024)})
        for event in (invalid, undecodable, oversized):
            r = requests.post(load.ingress, data=event.data, headers=event.http_headers(), timeout=30)
            posted[str(event.get("id"))] = r.status_code

    result = run_scenario(supervised, "poison", poison, after=3.0)
    _clean(result)
    accepted = {i for i, code in posted.items() if code == 202}
    refused = {i: code for i, code in posted.items() if code != 202}
    assert all(400 <= code < 500 for code in refused.values()), posted  # a clear 4xx, never a 5xx
    if accepted:  # taken by the Broker: must end dead-lettered with a reason, never silently dropped
        load_tag = next(iter(posted)).rsplit("-poison", 1)[0]
        deadline_letters = dead_letters(supervised, load_tag)
        assert accepted <= set(deadline_letters), (posted, deadline_letters)
        assert all(deadline_letters[i] for i in accepted), deadline_letters
    print(json.dumps({"poison": posted}))
