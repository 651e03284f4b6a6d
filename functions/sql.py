"""sql: read-only SQL over the lake's Delta tables (DuckDB over their Arrow datasets, functions/lake/sql.py).

    POST /sql     {"query": "SELECT ...", "limit": 100, "version": 3 | {"transactions": 3}, "as_of": "2026-...",
                   "timeout_s": 5 (at most the service's limit)}
                  -> {"columns": [{"name", "type"}], "rows": [[...]], "row_count", "truncated", "limit",
                      "elapsed_ms", "versions": {table: Delta version read}}
    GET  /tables  -> {"tables": [{name, domain, uri, version, row_count, files, partition_columns, columns,
                      versions}], "missing": [tables not written yet]}
    POST /        a CloudEvent com.coelho.realtime.sql.requested with the same data -> a
                  com.coelho.realtime.sql.result CloudEvent with the same answer
    GET  /health/liveness, /health/readiness (the S3 store answers), /metrics

A query that is not one read-only SELECT, names a table or column that does not exist, or reaches a limit (rows
are cut and say so; time, memory) is answered 400 with the reason; an unreachable S3 store 503. Configuration:
S3_ENDPOINT_URL and AWS_* (the lake's store), COELHO_LAKE_BUCKET, the COELHO_SQL_* limits
(functions.lake.sql_limits.Limits). Run: `python -m functions.sql`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response
from prometheus_client import Histogram

from eventing.cloudevent_types import SQL_REQUESTED, SQL_RESULT
from eventing.schema import ValidationError
from functions.lake.sql import SqlEngine
from functions.middleware.app import DependencyUnavailable, Event, create_app, event_data, reply, serve
from functions.middleware.contract import error_response

SOURCE = "/coelho/functions/sql"
ACCEPTED = [SQL_REQUESTED]
REQUEST_KEYS = ("query", "limit", "version", "as_of", "timeout_s")

QUERY_SECONDS = Histogram(
    "coelho_sql_query_seconds",
    "Time to answer one SQL query over the lake (check, load tables, run, convert)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class SqlService:
    def __init__(self, engine: SqlEngine) -> None:
        self.engine = engine

    def run(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, Mapping):
            raise ValidationError({"query": 'send a JSON object {"query": "SELECT ...", "limit": N}'})
        unknown = sorted(set(payload) - set(REQUEST_KEYS))
        if unknown:
            raise ValidationError({k: f"unknown field: send {', '.join(REQUEST_KEYS)}" for k in unknown})
        if "query" not in payload:
            raise ValidationError({"query": "missing: a SQL SELECT statement"})
        with QUERY_SECONDS.time():
            return self.engine.query(
                payload["query"],
                payload.get("limit"),
                payload.get("version"),
                payload.get("as_of"),
                payload.get("timeout_s"),
            )

    def sql_json(self, rest: str, payload: Any, query: Mapping[str, str]) -> dict[str, Any]:
        """POST /sql."""
        return self.run(payload)

    def handle(self, event: Event) -> Event:
        return reply(event, SQL_RESULT, SOURCE, self.run(event_data(event)))

    def ready(self) -> None:
        """The lake's S3 store accepts connections (no endpoint configured: the cloud's own, assumed up)."""
        endpoint = os.environ.get("S3_ENDPOINT_URL")
        if not endpoint or self.engine.catalog.root:
            return
        url = urlsplit(endpoint)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            with socket.create_connection((url.hostname or "127.0.0.1", port), timeout=1.0):
                pass
        except OSError as exc:
            raise DependencyUnavailable(f"the lake's S3 store at {endpoint} does not answer: {exc}") from None


def create(engine: SqlEngine | None = None) -> Flask:
    service = SqlService(engine or SqlEngine.from_env())
    app = create_app(
        "sql", service.handle, accepts=ACCEPTED, ready=service.ready, json_routes={"/sql": service.sql_json}
    )
    app.config["sql"] = service

    @app.get("/tables")
    def tables() -> Response:
        import json

        try:
            status, body = 200, service.engine.tables()
        except Exception as exc:
            status, body = error_response("sql", exc)
        return Response(json.dumps(body, default=str), status=status, mimetype="application/json")

    return app


if __name__ == "__main__":
    serve(create, default_server="waitress")
