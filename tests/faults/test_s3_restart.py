"""An S3 restart under load: the Broker ingress takes events again by itself, and nothing is lost.

The broker keeps its log on S3: while the S3 server is down it refuses writes. kafka-python's default, idempotent
producer turned fatal on the first refused write and the ingress answered 503 until the router was restarted; the
router's producer is now a plain one, and one that turns fatal anyway is replaced (ADR 0117). So once S3 is back
the ingress answers 202 again within seconds, without a router restart, and the events it takes are learned.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from coelho.runtime import Platform
from tests.faults.harness import Load, run_scenario

pytestmark = [pytest.mark.stack, pytest.mark.faults]

S3_DOWN_S = 4.0  # long enough for the load's writes to be refused by the broker while its store is away
RECOVERY_PATIENCE_S = 90.0  # failure bound only: without the fix the ingress never takes an event again


def _replaced(platform: Platform) -> float:
    """coelho_router_producer_replaced_total from the router's metrics (0 if not exported yet)."""
    url = f"http://{platform.settings.host}:{platform.settings.ports['router_metrics']}/metrics"
    for line in requests.get(url, timeout=10).text.splitlines():
        if line.startswith("coelho_router_producer_replaced_total "):
            return float(line.split()[1])
    return 0.0


def test_ingress_takes_events_again_after_an_s3_restart_without_a_router_restart(platform: Platform) -> None:
    platform.start(["router", "learn"])
    router_pid = platform.pid("router")
    marks: dict[str, int] = {}
    answered_after: list[int] = []

    def restart_s3(load: Load) -> None:
        platform.stop(["s3"])
        time.sleep(S3_DOWN_S)
        platform.start(["s3"])  # healthy, buckets there: the broker can store again
        marks["s3_back"] = len(load.acknowledged)
        # the ingress itself (not the load's retries) must answer 202 again
        session = requests.Session()
        deadline = time.monotonic() + RECOVERY_PATIENCE_S
        probe = 0
        while time.monotonic() < deadline:
            probe += 1
            headers = _probe_headers(f"{load.tag}-probe-{probe}")
            try:
                code = session.post(load.ingress, data=b"{}", headers=headers, timeout=15).status_code
            except requests.RequestException:
                code = 0
            answered_after.append(code)
            if code == 202:
                break
            time.sleep(0.5)
        marks["ingress_back"] = len(load.acknowledged)

    result = run_scenario(platform, "restart-s3", restart_s3, after=6.0, settle=240.0)
    print(json.dumps({**result.to_json(), "probes": answered_after, "producer_replaced": _replaced(platform)}))

    assert answered_after and answered_after[-1] == 202, (
        f"the ingress kept refusing after S3 was back: {answered_after}"
    )
    assert platform.pid("router") == router_pid and platform.running("router"), "the router was restarted"
    assert result.produced > marks["ingress_back"], "no event was acknowledged after the ingress recovered"
    assert result.lost == 0 and result.learned_twice == 0, result
    assert result.learned_once + result.dead_lettered == result.produced, result
    assert result.dead_lettered == 0, result.reasons


def _probe_headers(ce_id: str) -> dict[str, str]:
    """A CloudEvent no Trigger takes: it tests the ingress's write to Kafka only."""
    return {
        "ce-id": ce_id,
        "ce-specversion": "1.0",
        "ce-source": "/tests/faults/s3-restart",
        "ce-type": "com.coelho.faults.probe",
        "content-type": "application/json",
    }
