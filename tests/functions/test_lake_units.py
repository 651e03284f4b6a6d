"""The lake function without processes: events as rows (columns from the domain declarations), the micro-batcher
against an in-memory store (shared commits, limits, duplicates, failed and ambiguous commits, the crash hooks,
SIGTERM's flush), maintenance on a Delta table in a local directory (compaction, vacuum of old orphans only, the
log checkpoint), and the function's answers to events it cannot take."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import producers
from eventing.cloudevent_types import KAFKA_EVENT, LAKE_MAINTENANCE_REQUESTED
from eventing.domains import DOMAINS, get_domain
from eventing.schema import ValidationError
from functions.lake.rows import META_COLUMNS, Row, all_tables, arrow_table, flat_name, lake_table, to_row
from functions.lake.writer import LakeConfig, Pending, SeenIds, TableWriter
from functions.middleware.contract import DependencyUnavailable
from functions.middleware.events import UnsupportedEvent


def record_row(domain: str, data: dict[str, Any], ce_id: str, arrived: float | None = None) -> Row:
    d = get_domain(domain)
    return to_row(
        d.type("record"), d.source("producers"), ce_id, data, arrived=time.time() if arrived is None else arrived
    )


# --- rows ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(DOMAINS))
def test_every_declared_leaf_field_is_a_column_of_the_records_table(name: str) -> None:
    domain = get_domain(name)
    table = lake_table(name, "record")
    assert table.column_names == [flat_name(p) for p, _ in domain.leaf_fields()] + [c for c, _ in META_COLUMNS]
    data = producers.records(name, 1, seed=11)[0]
    row = record_row(name, data, "ce-1")
    arrow = arrow_table(table, [row])
    assert arrow.schema == table.arrow_schema() and arrow.num_rows == 1
    for path, _field in domain.leaf_fields():
        value = data
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        got = row.values[flat_name(path)]
        if isinstance(got, datetime):
            assert got == datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
        elif value is not None:
            assert got == pytest.approx(value) if isinstance(value, float) else got == value, path
    assert row.event_date == row.values["timestamp"].date().isoformat() and row.dated_by_event
    assert row.identities == (f"id:{data[domain.id_field]}", f"ce:{domain.source('producers')}|ce-1")


def test_tables_labels_and_unlabeled_records() -> None:
    assert [t.name for t in all_tables()] == [
        "transactions",
        "transactions_labels",
        "trips",
        "trips_labels",
        "customer_interactions",
    ]
    tfd = get_domain("tfd")
    record = producers.records("tfd", 1, seed=3)[0]
    unlabeled = {k: v for k, v in record.items() if k != "is_fraud"}
    row = record_row("tfd", unlabeled, "u1")
    assert row.table.name == "transactions" and row.values["is_fraud"] is None
    label = {"transaction_id": record["transaction_id"], "user_id": record["user_id"], "is_fraud": True}
    when = datetime(2026, 5, 4, 23, 59, tzinfo=UTC)
    labelled = to_row(tfd.type("label"), tfd.source("producers"), "l1", label, ce_time=when, arrived=time.time())
    assert labelled.table.name == "transactions_labels" and labelled.event_date == "2026-05-04"
    assert labelled.values["is_fraud"] is True and labelled.dated_by_event
    undated = to_row(tfd.type("label"), tfd.source("producers"), "l2", label, arrived=0.0)
    assert undated.event_date == "1970-01-01" and not undated.dated_by_event


def test_kafka_source_records_take_their_domain_from_the_topic_and_their_offset_from_the_id() -> None:
    data = producers.records("eta", 1, seed=5)[0]
    row = to_row(
        KAFKA_EVENT,
        "/apis/v1/namespaces/coelho/kafkasources/k#estimated_time_of_arrival",
        "partition:3/offset:42",
        data,
        arrived=time.time(),
    )
    assert row.table.name == "trips" and (row.values["kafka_partition"], row.values["kafka_offset"]) == (3, 42)
    extension = to_row(
        KAFKA_EVENT,
        "/k#estimated_time_of_arrival",
        "x",
        data,
        arrived=time.time(),
        extensions={"knativekafkapartition": "1", "knativekafkaoffset": "7"},
    )
    assert (extension.values["kafka_partition"], extension.values["kafka_offset"]) == (1, 7)
    label = {"transaction_id": "t1", "user_id": "u1", "is_fraud": False}
    assert to_row(KAFKA_EVENT, "/k#transaction_fraud_detection", "y", label, arrived=0).table.kind == "label"
    with pytest.raises(UnsupportedEvent, match="no domain"):
        to_row(KAFKA_EVENT, "/k#elsewhere", "z", data, arrived=0)


def test_events_no_table_takes_are_refused_with_the_reason() -> None:
    ecci = get_domain("ecci")
    with pytest.raises(UnsupportedEvent, match="no target"):
        to_row(ecci.type("label"), "/x", "1", {"event_id": "e", "customer_id": "c"}, arrived=0)
    with pytest.raises(UnsupportedEvent, match="records and labels"):
        to_row(ecci.type("prediction"), "/x", "1", {}, arrived=0)
    bad = dict(producers.records("tfd", 1, seed=1)[0], amount=-3)
    with pytest.raises(ValidationError) as err:
        record_row("tfd", bad, "1")
    assert "amount" in err.value.errors


# --- the micro-batcher ------------------------------------------------------------------------------------------
class FakeStore:
    """A table in memory: files are staged by write_files and visible only once committed."""

    def __init__(self, fail_commits: int = 0, lose_answer: int = 0, commit_delay: float = 0.0) -> None:
        self.staged: dict[str, list[Row]] = {}
        self.rows: list[Row] = []
        self.commits: list[tuple[str, int, int]] = []  # (app_id, batch, rows)
        self.fail_commits = fail_commits  # commits that fail and store nothing
        self.lose_answer = lose_answer  # commits that store the batch, then raise as if the answer was lost
        self.commit_delay = commit_delay
        self.loads = 0
        self.lock = threading.Lock()

    def open(self) -> None:
        return None

    def refresh(self) -> None:
        return None

    def version(self) -> int:
        return len(self.commits)

    def file_count(self) -> int:
        return len(self.commits)

    def write_files(self, rows: list[Row], batch_id: str) -> list[Any]:
        self.staged[batch_id] = list(rows)
        return [batch_id]

    def commit(self, actions: list[Any], app_id: str, batch: int, batch_id: str) -> int:
        time.sleep(self.commit_delay)
        with self.lock:
            if self.fail_commits:
                self.fail_commits -= 1
                raise OSError("S3 is down")
            self.rows.extend(self.staged.pop(batch_id))
            self.commits.append((app_id, batch, len(self.rows)))
            if self.lose_answer:
                self.lose_answer -= 1
                raise TimeoutError("the commit's answer was lost")
            return len(self.commits)

    def load_identities(self, date: str) -> set[str]:
        self.loads += 1
        with self.lock:
            return {i for r in self.rows if r.event_date == date for i in r.identities}


def writer(store: FakeStore, **config: Any) -> TableWriter:
    options = {"batch_rows": 500, "batch_ms": 100.0, "wait_s": 10.0, "raw": False, **config}
    return TableWriter(lake_table("tfd", "record"), store, LakeConfig(**options))


def stream(n: int, seed: int = 7) -> list[dict[str, Any]]:
    return producers.records("tfd", n, seed=seed)


def ids_of(rows: list[Row]) -> list[str]:
    return [r.values["transaction_id"] for r in rows]


def write_all(w: TableWriter, rows: list[Row], threads: int = 32) -> list[Pending | BaseException]:
    results: list[Pending | BaseException] = [None] * len(rows)  # type: ignore[list-item]

    def one(i: int) -> None:
        try:
            results[i] = w.write(rows[i])
        except BaseException as exc:  # collected for the assertions
            results[i] = exc

    pool = [threading.Thread(target=one, args=(i,)) for i in range(len(rows))]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return results


def test_concurrent_requests_share_commits_and_each_is_answered_after_its_commit() -> None:
    store = FakeStore(commit_delay=0.05)
    w = writer(store, batch_ms=200.0)
    rows = [record_row("tfd", e, f"c{i}") for i, e in enumerate(stream(60))]
    results = write_all(w, rows)
    assert all(isinstance(r, Pending) and not r.duplicate and r.version for r in results)
    assert sorted(ids_of(store.rows)) == sorted(ids_of(rows))
    assert len(store.commits) <= 3, store.commits  # 60 requests, a few commits
    assert [c[1] for c in store.commits] == list(range(1, len(store.commits) + 1))  # the app transaction's batches


def test_a_batch_is_committed_at_its_row_limit() -> None:
    store = FakeStore()
    w = writer(store, batch_rows=10, batch_ms=5000.0)
    started = time.monotonic()
    write_all(w, [record_row("tfd", e, f"c{i}") for i, e in enumerate(stream(30))])
    assert time.monotonic() - started < 4  # full batches do not wait for their age
    sizes = [b - a for a, b in zip([0] + [c[2] for c in store.commits], [c[2] for c in store.commits], strict=False)]
    assert sum(sizes) == 30 and max(sizes) <= 10


def test_duplicates_in_a_batch_and_after_a_commit_are_written_once() -> None:
    store = FakeStore()
    w = writer(store)
    events = stream(20)
    first = [record_row("tfd", e, f"c{i}") for i, e in enumerate(events)]
    again = [record_row("tfd", e, f"c{i}") for i, e in enumerate(events[:10])]  # redeliveries, same CloudEvents
    renamed = [record_row("tfd", e, f"new-{i}") for i, e in enumerate(events[10:])]  # same events, new CE ids
    results = write_all(w, first + again)
    assert sum(isinstance(r, Pending) and r.duplicate for r in results) == 10
    later = write_all(w, renamed + first[:3])
    assert all(isinstance(r, Pending) and r.duplicate for r in later)
    assert sorted(ids_of(store.rows)) == sorted(e["transaction_id"] for e in events)


def test_a_restarted_writer_reads_what_is_committed_before_writing() -> None:
    store = FakeStore()
    events = stream(15)
    write_all(writer(store), [record_row("tfd", e, f"c{i}") for i, e in enumerate(events)])
    fresh = writer(store)  # another process: nothing in memory
    results = write_all(fresh, [record_row("tfd", e, f"c{i}") for i, e in enumerate(events)])
    assert all(isinstance(r, Pending) and r.duplicate for r in results)
    assert len(store.rows) == 15 and store.loads >= 1


def test_a_failed_commit_answers_503_and_the_retry_is_written() -> None:
    store = FakeStore(fail_commits=1)
    w = writer(store)
    rows = [record_row("tfd", e, f"c{i}") for i, e in enumerate(stream(5))]
    failed = write_all(w, rows)
    assert all(isinstance(r, DependencyUnavailable) for r in failed)
    assert store.rows == []
    retried = write_all(w, rows)
    assert all(isinstance(r, Pending) and not r.duplicate for r in retried)
    assert sorted(ids_of(store.rows)) == sorted(ids_of(rows))


def test_a_commit_whose_answer_was_lost_is_not_written_twice() -> None:
    store = FakeStore(lose_answer=1)
    w = writer(store, batch_rows=5, batch_ms=10_000.0)  # the five rows in one batch, however slow the threads start
    rows = [record_row("tfd", e, f"c{i}") for i, e in enumerate(stream(5))]
    assert all(isinstance(r, DependencyUnavailable) for r in write_all(w, rows))  # not known to be done: 503
    assert all(isinstance(r, Pending) and r.duplicate for r in write_all(w, rows))  # the log says it is
    assert len(store.rows) == 5


@pytest.mark.parametrize("fault", ["crash-before-commit", "crash-after-commit"])
def test_the_crash_hooks_exit_at_their_point(fault: str) -> None:
    exits: list[int] = []

    def exit_now(code: int) -> None:  # the writer thread stops here for good, as the process would
        exits.append(code)
        threading.Event().wait()

    store = FakeStore()
    w = TableWriter(
        lake_table("tfd", "record"), store, LakeConfig(batch_ms=50.0, raw=False, fault=fault), exit_now=exit_now
    )
    pending = w.submit(record_row("tfd", stream(1)[0], "c1"))
    deadline = time.monotonic() + 10
    while not exits and time.monotonic() < deadline:
        time.sleep(0.01)
    assert exits == [9]
    assert not pending.done.wait(0.1)  # never answered: the process is gone
    assert len(store.rows) == (0 if fault == "crash-before-commit" else 1)
    with pytest.raises(ValueError, match="COELHO_LAKE_FAULT"):
        LakeConfig.from_env({"COELHO_LAKE_FAULT": "crash"})


def test_close_commits_what_waits_and_refuses_the_rest() -> None:
    store = FakeStore()
    w = writer(store, batch_ms=60_000.0)
    pending = [w.submit(record_row("tfd", e, f"c{i}")) for i, e in enumerate(stream(4))]
    w.close()
    assert all(p.done.is_set() and p.error is None for p in pending) and len(store.rows) == 4
    with pytest.raises(DependencyUnavailable, match="stopping"):
        w.submit(record_row("tfd", stream(5)[4], "c5"))


def test_seen_ids_check_the_day_before_for_rows_dated_by_their_arrival() -> None:
    loaded: list[str] = []

    def loader(date: str) -> set[str]:
        loaded.append(date)
        return {"id:t1"} if date == "2026-02-28" else set()

    seen = SeenIds(loader, keep=2)
    from functions.lake.writer import dedup_dates

    label = Row(lake_table("tfd", "label"), {}, "2026-03-01", False, ("id:t1",), 0.0)
    assert seen.known(label.identities, dedup_dates(label)) and loaded == ["2026-03-01", "2026-02-28"]


# --- maintenance ------------------------------------------------------------------------------------------------
class LocalObjects:
    """The object client of a DeltaStore whose table is a local directory: a PUT is a file (its key the path)."""

    def put_object(self, bucket: str, key: str, data: io.BytesIO, size: int, content_type: str = "") -> None:
        path = Path("/" + key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.read())


def test_maintenance_compacts_deletes_only_old_orphans_and_checkpoints_the_log(tmp_path: Path) -> None:
    from deltalake import DeltaTable

    from functions.lake.maintenance import maintain
    from functions.lake.store import DeltaStore

    root = tmp_path / "transactions"
    store = DeltaStore(lake_table("tfd", "record"), str(root), {}, objects=LocalObjects())
    store.open()
    events = stream(32)
    for batch in range(3):  # three micro-batches: three small files in one event_date partition
        rows = [record_row("tfd", e, f"c{batch}-{i}") for i, e in enumerate(events[batch * 10 : batch * 10 + 10])]
        actions = store.write_files(rows, f"b{batch}")
        store.refresh()
        store.commit(actions, "writer-1", batch + 1, f"b{batch}")
    # Parquet files no commit refers to: one left by a crash three hours ago, one of a batch being committed now
    (old,) = store.write_files([record_row("tfd", events[30], "crashed")], "crashed")
    (fresh,) = store.write_files([record_row("tfd", events[31], "committing")], "committing")
    three_hours_ago = time.time() - 3 * 3600
    os.utime(root / old.path, (three_hours_ago, three_hours_ago))
    batch_files = sorted(root.glob("event_date=*/part-b*.parquet"))

    done = maintain(store, retention_hours=1)
    assert (done["files_before"], done["files_after"], done["files_compacted"]) == (3, 1, 3), done
    # vacuum: the orphan older than the retention is deleted, the young one (a commit may still add it) is not, nor
    # are the files the compaction just removed from the log (older versions still read them)
    assert done["files_vacuumed"] == 1 and not (root / old.path).exists() and (root / fresh.path).exists()
    assert len(batch_files) == 3 and all(f.exists() for f in batch_files)
    assert DeltaTable(str(root), version=3).to_pyarrow_table().num_rows == 30
    # the log checkpoint: a Parquet file at the version maintenance left, named in _last_checkpoint, from which a
    # fresh reader gets the compacted table (one file, the 30 rows)
    version = done["version"]
    checkpoint = root / "_delta_log" / f"{version:020d}.checkpoint.parquet"
    assert checkpoint.exists(), sorted(p.name for p in (root / "_delta_log").iterdir())
    assert json.loads((root / "_delta_log" / "_last_checkpoint").read_text())["version"] == version
    import pyarrow.parquet as pq

    adds = [a for a in pq.read_table(checkpoint, columns=["add"]).column("add").to_pylist() if a]
    assert len(adds) == 1 and "part-b" not in adds[0]["path"]
    reread = DeltaTable(str(root))
    assert reread.version() == version and len(reread.file_uris()) == 1
    assert reread.to_pyarrow_table().num_rows == 30

    # a retention below an hour is taken as one: the young orphan survives a run asked for 0 hours
    assert maintain(store, retention_hours=0)["files_vacuumed"] == 0 and (root / fresh.path).exists()


# --- the function's answers -----------------------------------------------------------------------------------
def test_the_function_refuses_what_it_cannot_take_without_touching_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.lake import service

    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: any S3 call would fail
    lake = service.Lake(LakeConfig(), environ={"S3_ENDPOINT_URL": "http://127.0.0.1:9"})
    from functions.middleware.app import create_app

    app = create_app("lake", lake.handle, accepts=service.ACCEPTED, ready=lake.ready).test_client()
    headers = {"ce-id": "1", "ce-source": "/t", "ce-specversion": "1.0", "content-type": "application/json"}
    hello = app.post("/", json={"message": "Hello"}, headers={**headers, "ce-type": "boson.fn"})
    assert hello.status_code == 400 and LAKE_MAINTENANCE_REQUESTED in hello.json["accepted_types"]
    bad = app.post("/", json={"amount": -1}, headers={**headers, "ce-type": get_domain("tfd").type("record")})
    assert bad.status_code == 400 and "amount" in bad.json["fields"]
    ecci_label = app.post("/", json={}, headers={**headers, "ce-type": get_domain("ecci").type("label")})
    assert ecci_label.status_code == 400
    unknown = app.post("/", json={"tables": ["nope"]}, headers={**headers, "ce-type": LAKE_MAINTENANCE_REQUESTED})
    assert unknown.status_code == 400 and "nope" in unknown.json["message"]
