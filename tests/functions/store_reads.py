"""What a query reads from the lake's store: the data files it opens and the bytes it reads from them.

A table the catalog does not hold in memory is an Arrow dataset whose files are read through delta-rs's object
store (`deltalake.fs.DeltaStorageHandler`, the same for S3 and a local directory). `StoreReads` counts at that
boundary, so a filter pushed down to the scan shows as files never opened, and a projection as bytes never read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest


class _CountingFile:
    """A file object of the store whose reads are counted (everything else is the file's own)."""

    def __init__(self, inner: Any, reads: StoreReads) -> None:
        self._inner = inner
        self._reads = reads

    def read(self, size: int = -1) -> bytes:
        data = bytes(self._inner.read(size))
        self._reads.bytes += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass
class StoreReads:
    files: set[str] = field(default_factory=set)
    bytes: int = 0

    def reset(self) -> None:
        self.files.clear()
        self.bytes = 0


@contextmanager
def counting_store_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[StoreReads]:
    """Every data file opened through delta-rs's store while the block runs, and the bytes read from them."""
    import pyarrow as pa
    from deltalake.fs import DeltaStorageHandler

    reads = StoreReads()

    def open_input_file(self: Any, path: str) -> Any:
        reads.files.add(path)
        return pa.PythonFile(_CountingFile(self._handler.open_input_file(path), reads), mode="r")

    with monkeypatch.context() as patch:
        patch.setattr(DeltaStorageHandler, "open_input_file", open_input_file)
        yield reads


def query_reads(
    make_engine: Any, monkeypatch: pytest.MonkeyPatch, query: str, limit: int = 100_000
) -> tuple[dict[str, Any], StoreReads]:
    """One query on a new engine (so no Parquet footer read by an earlier query is cached): its answer, and what
    it read from the store."""
    engine = make_engine()
    try:
        with counting_store_reads(monkeypatch) as reads:
            answer = engine.query(query, limit=limit)
    finally:
        engine.close()
    return answer, reads


ROWS = 20_000  # of the table write_transactions writes, in FILES files
FILES = 4


def write_transactions(uri: str, storage_options: dict[str, str] | None = None) -> None:
    """A `transactions` table of ROWS rows in FILES files: two commits, each with a file per event_date (half of
    the rows in 2026-03-01). A wide column of incompressible text makes one column a small part of every file, as
    in the lake, where a table has tens of columns."""
    import hashlib

    import deltalake
    import pyarrow as pa

    half = ROWS // 2
    for start in (0, half):
        ids = range(start, start + half)
        deltalake.write_deltalake(
            uri,
            pa.table(
                {
                    "transaction_id": [f"tx-{i}" for i in ids],
                    "amount": [float(i % 977) for i in ids],
                    "note": [hashlib.sha256(str(i).encode()).hexdigest() for i in ids],
                    "event_date": ["2026-03-01" if i % 2 else "2026-03-02" for i in ids],
                }
            ),
            mode="append",
            partition_by=["event_date"],
            storage_options=storage_options,
        )


def assert_pushed_down(make_engine: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Over the table of `write_transactions`: a filter on the partition opens only that half of the files, and a
    query of one column reads a fraction of the bytes all columns take. What each query read, in bytes."""
    everything, all_reads = query_reads(make_engine, monkeypatch, "SELECT * FROM transactions", limit=ROWS)
    assert everything["row_count"] == ROWS and len(all_reads.files) == FILES, all_reads.files
    day, day_reads = query_reads(
        make_engine,
        monkeypatch,
        "SELECT count(*), sum(amount) FROM transactions WHERE event_date = '2026-03-01'",
    )
    column = {c["name"]: i for i, c in enumerate(everything["columns"])}
    amount, date = column["amount"], column["event_date"]
    in_day = [r for r in everything["rows"] if r[date] == "2026-03-01"]
    assert day["rows"] == [[len(in_day), pytest.approx(sum(r[amount] for r in in_day))]]
    assert len(day_reads.files) == FILES // 2, day_reads.files  # the other partition's files are never opened
    assert all("event_date=2026-03-01" in f for f in day_reads.files)
    one, one_reads = query_reads(make_engine, monkeypatch, "SELECT sum(amount) FROM transactions")
    assert one["rows"] == [[pytest.approx(sum(r[amount] for r in everything["rows"]))]]
    assert len(one_reads.files) == FILES and one_reads.bytes * 3 < all_reads.bytes, (one_reads, all_reads)
    return {"all_columns": all_reads.bytes, "one_day": day_reads.bytes, "one_column": one_reads.bytes}
