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


def assert_pushed_down(make_engine: Any, monkeypatch: pytest.MonkeyPatch, rows: int, files: int) -> None:
    """Over a `transactions` table of `rows` rows in `files` files, half of them in partition event_date =
    '2026-03-01': a filter on the partition opens only that half of the files, and a query of one column reads a
    fraction of the bytes all columns take."""
    everything, all_reads = query_reads(make_engine, monkeypatch, "SELECT * FROM transactions", limit=rows)
    assert everything["row_count"] == rows and len(all_reads.files) == files, all_reads.files
    day, day_reads = query_reads(
        make_engine,
        monkeypatch,
        "SELECT count(*), sum(amount) FROM transactions WHERE event_date = '2026-03-01'",
    )
    column = {c["name"]: i for i, c in enumerate(everything["columns"])}
    amount, date = column["amount"], column["event_date"]
    in_day = [r for r in everything["rows"] if r[date] == "2026-03-01"]
    assert day["rows"] == [[len(in_day), pytest.approx(sum(r[amount] for r in in_day))]]
    assert len(day_reads.files) == files // 2, day_reads.files  # the other partition's files are never opened
    assert all("event_date=2026-03-01" in f for f in day_reads.files)
    one, one_reads = query_reads(make_engine, monkeypatch, "SELECT sum(amount) FROM transactions")
    assert one["rows"] == [[pytest.approx(sum(r[amount] for r in everything["rows"]))]]
    assert len(one_reads.files) == files and one_reads.bytes * 3 < all_reads.bytes, (one_reads, all_reads)
