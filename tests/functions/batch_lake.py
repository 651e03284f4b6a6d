"""A small lake for the batch studies' tests and bench: seeded producer events written to the Delta tables with the
lake function's own row mapping and store (functions/lake/rows.py, store.py), in several commits (versions)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from eventing.domains import get_domain
from functions.lake.rows import Row, lake_table, to_row
from functions.lake.service import uri_of
from functions.lake.store import DeltaStore
from functions.lake.tables import storage_options
from producers.generators import make_generator


def lake_rows(domain_name: str, count: int, seed: int, delayed_labels: bool = False) -> list[Row]:
    """The rows of `count` records (and their labels) of the domain's seeded stream."""
    domain = get_domain(domain_name)
    generator = make_generator(domain.name, seed=seed, delayed_labels=delayed_labels)
    now = time.time()
    return [
        to_row(domain.type(event.kind), domain.source("producer"), f"{seed}-{i}", event.data, arrived=now)
        for i, event in enumerate(generator.take(count))
    ]


def write_lake(
    domain_name: str,
    count: int,
    seed: int,
    environ: Mapping[str, str],
    commits: int = 3,
    delayed_labels: bool = False,
    kinds: tuple[str, ...] = ("record", "label"),
) -> dict[str, Any]:
    """Write the rows of `count` records in `commits` commits per table: {table: [version after each commit]}."""
    rows = lake_rows(domain_name, count, seed, delayed_labels)
    options = storage_options(environ)
    out: dict[str, Any] = {}
    for kind in kinds:
        mine = [r for r in rows if r.table.kind == kind]
        if not mine:
            continue
        table = lake_table(domain_name, kind)  # type: ignore[arg-type]
        store = DeltaStore(table, uri_of(table, environ), options)
        store.open()
        versions = []
        size = -(-len(mine) // commits)
        for batch in range(commits):
            part = mine[batch * size : (batch + 1) * size]
            if not part:
                continue
            batch_id = f"test-{seed}-{batch + 1:04d}"
            actions = store.write_files(part, batch_id)
            store.refresh()
            versions.append(store.commit(actions, f"batch-test/{table.name}", batch + 1, batch_id))
        out[table.name] = versions
    return out
