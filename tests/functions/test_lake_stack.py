"""The lake function as a real process against the platform's S3 server (SeaweedFS).

Events go to the function as the Broker delivers them: concurrently, with duplicates and redeliveries, each sent
again until it is answered with a 2xx. The tables are then read back in a fresh process, with delta-rs and with
DuckDB over its Arrow dataset: every table must hold exactly one row per distinct event, also after the process
was killed between a batch's Parquet files and its commit, right after a commit, and with -9 in the middle of a
batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from cloudevents.core.bindings.http import HTTPMessage, to_binary_event
from cloudevents.core.v1.event import CloudEvent

import producers
from eventing.cloudevent_types import KAFKA_EVENT, LAKE_MAINTENANCE_COMPLETED, LAKE_MAINTENANCE_REQUESTED
from eventing.domains import get_domain
from producers.kafka_record import to_cloudevent

pytestmark = pytest.mark.stack

READ_BACK = """
import json
import duckdb
from deltalake import DeltaTable
from functions.lake.rows import all_tables
from functions.lake.service import uri_of
from functions.lake.tables import storage_options

options, out = storage_options(), {}
for table in all_tables():
    uri = uri_of(table)
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        continue
    dt = DeltaTable(uri, storage_options=options)
    dataset = dt.to_pyarrow_dataset()
    ids = dataset.to_table(columns=[table.id_column]).column(0).to_pylist()
    con = duckdb.connect()
    con.register("t", dataset)
    rows, distinct = con.execute(f"SELECT count(*), count(DISTINCT {table.id_column}) FROM t").fetchone()
    out[table.name] = {"ids": ids, "rows": rows, "distinct": distinct, "version": dt.version(),
                       "files": len(dt.file_uris())}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def s3(platform: Any) -> Any:
    platform.start(["s3"], producers=False)
    return platform.settings


@pytest.fixture
def bucket(s3: Any) -> str:
    """A bucket of its own for the test's Delta tables."""
    from coelho.services import s3_client

    name = f"lake-test-{uuid.uuid4().hex[:10]}"
    s3_client(s3).make_bucket(name)
    return name


def lake_env(settings: Any, bucket: str, port: int, **extra: str) -> dict[str, str]:
    from coelho.services import python_service_env

    return {
        **os.environ,
        **python_service_env(settings, "lake"),
        "PORT": str(port),
        "COELHO_LAKE_BUCKET": bucket,
        **extra,
    }


class LakeProcess:
    """`python -m functions.lake` on a fixed port, started and restarted with different environments."""

    def __init__(self, settings: Any, bucket: str, log_dir: Path) -> None:
        from coelho.settings import free_port

        self.settings, self.bucket, self.log_dir = settings, bucket, log_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, **env: str) -> subprocess.Popen[bytes]:
        self.starts += 1
        log = (self.log_dir / f"lake-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "functions.lake"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=lake_env(self.settings, self.bucket, self.port, **env),
        )
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/health/readiness", timeout=2).status_code == 200:
                    return self.proc
            if self.proc.poll() is not None and env.get("COELHO_LAKE_FAULT"):
                return self.proc  # a fault process may crash on a batch before its readiness is seen
            assert self.proc.poll() is None and time.monotonic() < deadline, (
                self.log_dir / f"lake-{self.starts}.log"
            ).read_text()
            time.sleep(0.1)

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def lake(s3: Any, bucket: str, tmp_path: Path) -> Iterator[LakeProcess]:
    process = LakeProcess(s3, bucket, tmp_path)
    try:
        yield process
    finally:
        process.stop()


def read_back(settings: Any, bucket: str) -> dict[str, Any]:
    """Every lake table as a fresh process reads it (delta-rs, and DuckDB over its Arrow dataset)."""
    env = lake_env(settings, bucket, 0)
    out = subprocess.run(
        [sys.executable, "-c", READ_BACK], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def rows_now(settings: Any, bucket: str) -> int:
    """Rows in the transactions and trips tables now (read in this process: a quick look between the crashes)."""
    from deltalake import DeltaTable

    from functions.lake.rows import lake_table
    from functions.lake.service import uri_of
    from functions.lake.tables import storage_options

    env = lake_env(settings, bucket, 0)
    options = storage_options(env)
    return sum(
        DeltaTable(uri_of(lake_table(d, "record"), env), storage_options=options).to_pyarrow_dataset().count_rows()
        for d in ("tfd", "eta")
    )


def message(ce_type: str, source: str, ce_id: str, data: Any, **ext: Any) -> HTTPMessage:
    attributes = {
        "specversion": "1.0",
        "id": ce_id,
        "source": source,
        "type": ce_type,
        "datacontenttype": "application/json",
        **ext,
    }
    return to_binary_event(CloudEvent(attributes, data))


def stream_messages(
    domain: str, count: int, seed: int, delayed_labels: bool = False
) -> tuple[list[HTTPMessage], list[Any]]:
    events = list(producers.generate(domain, seed=seed, count=count, delayed_labels=delayed_labels))
    return [to_binary_event(to_cloudevent(domain, e)) for e in events], events


def deliver(url: str, msg: HTTPMessage, session: requests.Session, deadline: float) -> int:
    """Until a 2xx, as the Knative dispatcher retries (connection errors and 5xx), or the deadline."""
    while time.monotonic() < deadline:
        try:
            response = session.post(url, data=msg.body, headers=dict(msg.headers), timeout=30)
        except requests.RequestException:
            time.sleep(0.05)
            continue
        if response.status_code < 300:
            return response.status_code
        assert response.status_code >= 500, response.text
        time.sleep(0.05)
    raise AssertionError("not delivered before the deadline")


def deliver_all(url: str, messages: list[HTTPMessage], threads: int = 32, timeout: float = 300) -> list[int]:
    deadline = time.monotonic() + timeout
    local = threading.local()

    def one(msg: HTTPMessage) -> int:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return deliver(url, msg, local.session, deadline)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, messages))


def with_redeliveries(messages: list[HTTPMessage], share: float, seed: int) -> list[HTTPMessage]:
    rng = random.Random(seed)
    out = messages + [m for m in messages if rng.random() < share]
    rng.shuffle(out)
    return out


def assert_once(table: dict[str, Any], expected_ids: set[str]) -> None:
    assert table["rows"] == table["distinct"] == len(expected_ids), (
        table["rows"],
        table["distinct"],
        len(expected_ids),
    )
    assert sorted(table["ids"]) == sorted(expected_ids)


def metric(url: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in requests.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or line.startswith(f"{name}{{{wanted},"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_every_record_and_label_lands_once_despite_duplicates_and_redeliveries(
    lake: LakeProcess, s3: Any, bucket: str
) -> None:
    lake.start(COELHO_LAKE_BATCH_MS="300")
    tfd = get_domain("tfd")
    tfd_msgs, tfd_events = stream_messages("tfd", 100, seed=21, delayed_labels=True)
    eta_msgs, eta_events = stream_messages("eta", 40, seed=22)
    ecci_msgs, ecci_events = stream_messages("ecci", 40, seed=23)
    records = [e.data for e in tfd_events if e.kind == "record"]
    labels = [e.data for e in tfd_events if e.kind == "label"]
    # the same transactions sent again under new CloudEvent ids (a producer's retry), and trips as plain Kafka
    # records through a KafkaSource: ten already sent, five only this way
    renamed = [
        message(tfd.type("record"), tfd.source("producers"), f"again-{i}", r) for i, r in enumerate(records[:20])
    ]
    kafka_source = "/apis/v1/namespaces/coelho/kafkasources/coelho-records#estimated_time_of_arrival"
    extra_trips = producers.records("eta", 5, seed=99)
    kafka = [
        message(KAFKA_EVENT, kafka_source, f"partition:0/offset:{i}", e.data) for i, e in enumerate(eta_events[:10])
    ]
    kafka += [message(KAFKA_EVENT, kafka_source, f"partition:1/offset:{i}", t) for i, t in enumerate(extra_trips)]
    sent = with_redeliveries(tfd_msgs + eta_msgs + ecci_msgs, 0.3, seed=5) + renamed + kafka
    assert set(deliver_all(lake.url, sent, threads=48)) == {204}
    assert metric(lake.url, "coelho_lake_rows_written_total", domain="tfd", kind="record") == len(records)
    assert metric(lake.url, "coelho_lake_duplicates_total", domain="tfd", kind="record") >= 20

    # records as received, in the raw-data bucket
    from coelho.services import s3_client

    client = s3_client(s3)
    raw_ids = set()
    for obj in client.list_objects("raw-data", prefix="trips/", recursive=True):
        for line in client.get_object("raw-data", obj.object_name).read().decode().splitlines():
            raw_ids.add(json.loads(line)["data"]["trip_id"])
    assert {e.data["trip_id"] for e in eta_events} <= raw_ids

    # `coelho lake status` reads the same tables
    status = subprocess.run(
        [sys.executable, "-m", "coelho.cli", "lake", "status", "--json"],
        capture_output=True,
        text=True,
        env=lake_env(s3, bucket, 0),
        timeout=120,
        check=True,
    )
    rows = {t["table"]: t.get("rows") for t in json.loads(status.stdout)}
    assert rows["transactions"] == len(records) and rows["trips_labels"] == 0, status.stdout

    # maintenance compacts the micro-batches' files and changes no row
    request = message(LAKE_MAINTENANCE_REQUESTED, "/coelho/tests", "m1", {"tables": ["transactions", "trips"]})
    response = requests.post(lake.url, data=request.body, headers=dict(request.headers), timeout=120)
    assert response.status_code == 200 and response.headers["ce-type"] == LAKE_MAINTENANCE_COMPLETED, response.text
    done = {t["table"]: t for t in response.json()["tables"]}
    assert done["transactions"]["files_after"] <= 1 < done["transactions"]["files_before"]
    # ... and checkpoints each table's log on S3 at the version it left (readers start there, not at JSON 0)
    for name in ("transactions", "trips"):
        log = _objects(s3, bucket, f"{name}/_delta_log/")
        assert f"{name}/_delta_log/{done[name]['version']:020d}.checkpoint.parquet" in log, log
        assert f"{name}/_delta_log/_last_checkpoint" in log
    # the files compaction removed from the log stay for time travel (vacuum deletes only what is past the retention)
    assert done["transactions"]["files_vacuumed"] == 0

    tables = read_back(s3, bucket)  # a fresh process, after compaction
    assert_once(tables["transactions"], {r["transaction_id"] for r in records})
    assert_once(tables["transactions_labels"], {r["transaction_id"] for r in labels})
    assert_once(tables["trips"], {e.data["trip_id"] for e in eta_events} | {t["trip_id"] for t in extra_trips})
    assert_once(tables["customer_interactions"], {e.data["event_id"] for e in ecci_events})
    assert tables["trips_labels"]["rows"] == 0
    assert tables["transactions"]["files"] == 1


def test_sigterm_commits_the_batch_its_requests_wait_for(lake: LakeProcess, s3: Any, bucket: str) -> None:
    lake.start(COELHO_LAKE_BATCH_MS="60000")  # nothing would be committed for a minute
    msgs, events = stream_messages("ecci", 5, seed=31)
    answers: list[int] = []
    senders = [
        threading.Thread(
            target=lambda m=m: answers.append(
                requests.post(lake.url, data=m.body, headers=dict(m.headers), timeout=30).status_code
            )
        )
        for m in msgs
    ]
    for t in senders:
        t.start()
    deadline = time.monotonic() + 20
    while metric(lake.url, "coelho_lake_pending_rows", domain="ecci", kind="record") < 5:
        assert time.monotonic() < deadline, "the requests never reached the writer"
        time.sleep(0.05)
    assert lake.proc is not None
    lake.proc.send_signal(signal.SIGTERM)
    for t in senders:
        t.join(30)
    assert answers == [204] * 5
    assert lake.wait_exit() == 0
    from deltalake import DeltaTable

    from functions.lake.rows import lake_table
    from functions.lake.service import uri_of
    from functions.lake.tables import storage_options

    env = lake_env(s3, bucket, 0)
    table = DeltaTable(uri_of(lake_table("ecci", "record"), env), storage_options=storage_options(env))
    assert sorted(table.to_pyarrow_table(columns=["event_id"]).column(0).to_pylist()) == sorted(
        e.data["event_id"] for e in events
    )


def _objects(s3: Any, bucket: str, prefix: str) -> list[str]:
    from coelho.services import s3_client

    return [o.object_name for o in s3_client(s3).list_objects(bucket, prefix=prefix, recursive=True)]


def test_kill_9_at_any_point_loses_nothing_and_duplicates_nothing(lake: LakeProcess, s3: Any, bucket: str) -> None:
    tfd_msgs, tfd_events = stream_messages("tfd", 120, seed=41)
    eta_msgs, eta_events = stream_messages("eta", 60, seed=42)
    sent = with_redeliveries(tfd_msgs + eta_msgs, 0.25, seed=6)
    results: list[int] = []
    sender = threading.Thread(target=lambda: results.extend(deliver_all(lake.url, sent, threads=24)))

    # 1. killed after writing a batch's Parquet files, before its commit
    lake.start(COELHO_LAKE_FAULT="crash-before-commit", COELHO_LAKE_BATCH_MS="300")
    sender.start()
    assert lake.wait_exit() == 9
    orphans = [
        o for o in _objects(s3, bucket, "transactions/") + _objects(s3, bucket, "trips/") if o.endswith(".parquet")
    ]
    assert orphans, "the crash should come after the Parquet files were written"
    assert rows_now(s3, bucket) == 0  # ... and before anything was committed

    # 2. killed right after a commit, before answering
    lake.start(COELHO_LAKE_FAULT="crash-after-commit", COELHO_LAKE_BATCH_MS="300")
    assert lake.wait_exit() == 9
    assert rows_now(s3, bucket) > 0

    # 3. kill -9 from outside while requests wait for their batch
    lake.start(COELHO_LAKE_BATCH_MS="1500")
    time.sleep(0.8)
    assert lake.proc is not None
    lake.proc.send_signal(signal.SIGKILL)
    assert lake.wait_exit() == -signal.SIGKILL

    # 4. a healthy process: the senders' retries finish
    lake.start(COELHO_LAKE_BATCH_MS="300")
    sender.join(300)
    assert not sender.is_alive() and set(results) == {204} and len(results) == len(sent)

    tables = read_back(s3, bucket)
    assert_once(tables["transactions"], {e.data["transaction_id"] for e in tfd_events})
    assert_once(tables["trips"], {e.data["trip_id"] for e in eta_events})
