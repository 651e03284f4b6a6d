"""The lake's Triggers keep enough deliveries in flight to fill a batch, and the lake has a thread for each.

The lake answers a request only once the batch holding its row is committed (ADR 0080), so a Trigger's
throughput is its deliveries in flight over the time to a commit: a Trigger that keeps fewer in flight than
COELHO_LAKE_BATCH_ROWS never fills a batch and waits COELHO_LAKE_BATCH_MS for every one; a lake with fewer request
threads than the deliveries in flight holds the rest back in its accept queue. Read from knative/ (no process).
"""

from __future__ import annotations

from coelho.settings import PROJECT_ROOT
from eventing.router.manifests import Manifests, Trigger
from functions.lake.__main__ import DEFAULT_THREADS, threads
from functions.lake.writer import LakeConfig

MANIFESTS = Manifests.load(PROJECT_ROOT / "knative")
CONFIG = MANIFESTS.config_maps[("coelho", "coelho-config")]


def lake_ingest_triggers() -> list[Trigger]:
    """The Triggers that deliver records and labels to the lake (not its maintenance)."""
    return [
        t for t in MANIFESTS.triggers.values() if t.subscriber.name == "coelho-lake" and t.name != "lake-maintenance"
    ]


def test_every_lake_ingest_trigger_keeps_a_batch_in_flight() -> None:
    triggers = lake_ingest_triggers()
    assert {t.name for t in triggers} >= {
        "tfd-lake-records",
        "tfd-lake-labels",
        "eta-lake-records",
        "ecci-lake-records",
    }
    batch_rows = LakeConfig.from_env(dict(CONFIG)).batch_rows
    short = {t.name: t.max_in_flight for t in triggers if (t.max_in_flight or 16) < batch_rows}
    assert not short, f"lake Triggers with fewer deliveries in flight than a batch of {batch_rows} rows: {short}"
    assert all(not t.ordered for t in triggers), "the lake keeps no order: its Triggers deliver in parallel"


def test_the_lake_has_a_request_thread_for_every_delivery_in_flight() -> None:
    in_flight = sum(t.max_in_flight or 16 for t in lake_ingest_triggers())
    assert threads(dict(CONFIG)) >= in_flight  # the cluster's ConfigMap
    assert in_flight <= DEFAULT_THREADS  # `coelho up`, which sets no COELHO_LAKE_THREADS
