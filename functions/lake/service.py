"""The lake function: every record and label of the streams, exactly once, in Delta tables on S3.

Takes each domain's `com.coelho.realtime.<domain>.record` and `.label` CloudEvents, `dev.knative.kafka.event` (a
KafkaSource record; the topic after `#` in the source names the domain), and `com.coelho.realtime.lake.maintenance.
requested` (or `dev.knative.sources.ping`, what the maintenance PingSource sends) with optional data
{"tables": [...]}.

A record or label becomes a row (functions/lake/rows.py) handed to its table's writer (functions/lake/writer.py);
the request is answered 204 once the batch holding it is committed, or found already committed (a duplicate); 400
for an event no table takes or that its domain's schema rejects; 503 while S3 is unreachable or a commit fails
(the Broker retries). Maintenance answers with a `lake.maintenance.completed` CloudEvent listing what it did.
`python -m functions.lake` serves it (functions/lake/__main__.py).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask

from eventing.cloudevent_types import KAFKA_EVENT, LAKE_MAINTENANCE_COMPLETED, LAKE_MAINTENANCE_REQUESTED
from eventing.domains import DOMAINS
from eventing.schema import ValidationError
from functions.lake.maintenance import maintain
from functions.lake.rows import LABELS_SUFFIX, LakeTable, all_tables, to_row
from functions.lake.store import DeltaStore, RawStore, object_client
from functions.lake.tables import storage_options, table_uri
from functions.lake.writer import LakeConfig, TableWriter
from functions.middleware.app import DependencyUnavailable, Event, create_app, event_data, reply
from functions.middleware.openapi import domain_events, named_list

log = logging.getLogger("coelho.functions.lake")

PING = "dev.knative.sources.ping"
ACCEPTED = sorted(
    [d.type("record") for d in DOMAINS.values()]
    + [d.type("label") for d in DOMAINS.values() if d.target is not None]
    + [KAFKA_EVENT, LAKE_MAINTENANCE_REQUESTED, PING]
)
KAFKA_EXTENSIONS = ("knativekafkapartition", "knativekafkaoffset")


def uri_of(table: LakeTable, environ: Mapping[str, str] | None = None) -> str:
    """s3://<bucket>/<table>: a labels table sits beside its records table."""
    base = table.name.removesuffix(LABELS_SUFFIX)
    return table_uri(base, environ=environ) + (LABELS_SUFFIX if table.kind == "label" else "")


class Lake:
    """The writers of every table of this process, and maintenance."""

    def __init__(self, config: LakeConfig, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.config = config
        options = storage_options(env)
        objects = object_client(options)
        raw = RawStore(options, objects=objects)
        self.stores = {t.name: DeltaStore(t, uri_of(t, env), options, objects=objects) for t in all_tables()}
        self.writers = {name: TableWriter(store.table, store, config, raw) for name, store in self.stores.items()}
        self._maintenance = threading.Lock()

    def ready(self) -> None:
        """Readiness: every table exists (created on first start) and S3 answers."""
        try:
            for writer in self.writers.values():
                writer.ensure_open()
        except Exception as exc:
            raise DependencyUnavailable(f"the lake's S3 store: {exc}") from exc

    def handle(self, event: Event) -> Event | None:
        ce_type = event.get_type()
        if ce_type in (LAKE_MAINTENANCE_REQUESTED, PING):
            return self.maintenance(event)
        arrived = time.time()
        row = to_row(
            ce_type,
            event.get_source(),
            event.get_id(),
            event_data(event),
            ce_time=event.get_time(),
            extensions={k: event.get_extension(k) for k in KAFKA_EXTENSIONS if event.get_extension(k)},
            arrived=arrived,
        )
        self.writers[row.table.name].write(row)
        return None

    def maintenance(self, event: Event) -> Event:
        data = event_data(event) if event.get_type() == LAKE_MAINTENANCE_REQUESTED else None
        names = requested_tables(data, list(self.stores))
        results = []
        with self._maintenance:
            for name in names:
                try:
                    result = maintain(self.stores[name], self.config.vacuum_hours)
                    self.writers[name].maintenance_done(result["files_after"])
                except Exception as exc:  # one table's failure does not stop the others; the next run retries
                    log.warning("lake maintenance of %s failed: %s", name, exc)
                    result = {"table": name, "error": str(exc)}
                results.append(result)
        if names and all("error" in r for r in results):
            raise DependencyUnavailable(f"lake maintenance failed: {results[0]['error']}")
        return reply(event, LAKE_MAINTENANCE_COMPLETED, "/coelho/functions/lake", {"tables": results})

    def close(self) -> None:
        """Commit everything pending and stop the writers (SIGTERM)."""
        for writer in self.writers.values():
            with writer.cond:
                writer.closing = True
                writer.cond.notify_all()
        for writer in self.writers.values():
            writer.close()


def requested_tables(data: Any, known: list[str]) -> list[str]:
    """The tables a maintenance request names ({"tables": [...]} or {"table": ...}); all by default.

    >>> requested_tables({"table": "trips"}, ["trips", "transactions"]), requested_tables(None, ["trips"])
    (['trips'], ['trips'])
    >>> requested_tables({"tables": 5}, ["trips"])
    Traceback (most recent call last):
    ...
    eventing.schema.ValidationError: invalid event: tables: a list of lake tables: trips
    """
    if not isinstance(data, Mapping):
        return list(known)
    names = data.get("tables") or ([data["table"]] if data.get("table") else list(known))
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or len(names) > len(known):
        raise ValidationError({"tables": f"a list of lake tables: {', '.join(known)}"})
    unknown = [str(n) for n in names if n not in known]
    if unknown:
        raise ValidationError({"tables": f"unknown lake tables {unknown}: one of {', '.join(known)}"})
    return [str(n) for n in names]


def lake_events_schema() -> dict[str, Any]:
    """The data the lake takes, for its OpenAPI description: any domain's record, or a maintenance request."""
    from functions.lake.rows import all_tables

    records = domain_events("record")["oneOf"]
    return {"oneOf": [*records, named_list("tables", [t.name for t in all_tables()])]}


def create() -> Flask:
    lake = Lake(LakeConfig.from_env())
    try:
        lake.ready()
    except DependencyUnavailable as exc:  # S3 not up yet: readiness retries
        log.warning("lake tables not open yet: %s", exc)
    app = create_app("lake", lake.handle, accepts=ACCEPTED, ready=lake.ready, events_schema=lake_events_schema)
    app.config["lake"] = lake
    return app


def stop_on_sigterm(lake: Lake, grace_s: float = 0.5) -> None:
    """On SIGTERM, commit every pending batch (their requests are answered), then exit. Installed from the serving
    process's main thread (`python -m functions.lake`)."""

    def shutdown() -> None:
        lake.close()
        time.sleep(grace_s)  # the answers of the last batches reach their senders
        logging.shutdown()
        os._exit(0)

    def on_sigterm(signum: int, frame: Any) -> None:
        log.info("SIGTERM: committing pending batches, then exiting")
        threading.Thread(target=shutdown, name="coelho-lake-shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)
