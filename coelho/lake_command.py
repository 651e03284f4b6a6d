"""`coelho lake`: the lake's Delta tables at a glance, and maintenance on demand.

coelho lake status            # per table: version, active files, rows
coelho lake maintain trips    # compact, vacuum and checkpoint now (through the Broker, like the schedule)
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import click


def _settings() -> Any:
    from coelho.settings import Settings

    return Settings.load()


@click.group()
def lake() -> None:
    """The lake: every record and label in Delta tables on S3 (the lake function writes them)."""


@lake.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def status(as_json: bool) -> None:
    """Version, active files and rows of every lake table (read from the Delta logs on S3)."""
    from deltalake import DeltaTable

    from functions.lake.rows import all_tables
    from functions.lake.service import uri_of
    from functions.lake.tables import storage_options

    env = {**os.environ, **_settings().function_env()}  # COELHO_LAKE_BUCKET too
    options = storage_options(env)
    out: list[dict[str, Any]] = []
    for table in all_tables():
        uri = uri_of(table, env)
        try:
            dt = DeltaTable(uri, storage_options=options)
        except Exception as exc:  # not created yet (no lake function ran), or S3 down
            out.append({"table": table.name, "uri": uri, "error": str(exc).splitlines()[0]})
            continue
        out.append(
            {
                "table": table.name,
                "uri": uri,
                "version": dt.version(),
                "files": len(dt.file_uris()),
                "rows": dt.to_pyarrow_dataset().count_rows(),
            }
        )
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    for row in out:
        if "error" in row:
            click.echo(f"{row['table']:<24} {row['uri']}: {row['error']}")
        else:
            click.echo(
                f"{row['table']:<24} version {row['version']:>6}  files {row['files']:>5}  rows {row['rows']:>9}"
            )


@lake.command()
@click.argument("tables", nargs=-1)
@click.option("--broker", default=None, help="Broker ingress URL (default: the local router's /<namespace>/default)")
def maintain(tables: tuple[str, ...], broker: str | None) -> None:
    """Ask the lake function, through the Broker, to compact, vacuum and checkpoint TABLES (all by default).

    Sends the `com.coelho.realtime.lake.maintenance.requested` CloudEvent, so it goes through the lake-maintenance
    Trigger (retries, dead letters) as the hourly schedule does.
    """
    import requests
    from cloudevents.core.bindings.http import to_binary_event
    from cloudevents.core.v1.event import CloudEvent

    from eventing.cloudevent_types import LAKE_MAINTENANCE_REQUESTED
    from functions.lake.rows import all_tables

    known = [t.name for t in all_tables()]
    unknown = [t for t in tables if t not in known]
    if unknown:
        raise click.BadParameter(f"unknown tables {unknown}: one of {', '.join(known)}", param_hint="TABLES")
    settings = _settings()
    target = broker or f"{settings.broker_url}/{settings.namespace}/default"
    event = CloudEvent(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/coelho/cli",
            "type": LAKE_MAINTENANCE_REQUESTED,
            "datacontenttype": "application/json",
        },
        {"reason": "on demand", **({"tables": list(tables)} if tables else {})},
    )
    message = to_binary_event(event)
    try:
        response = requests.post(target, data=message.body, headers=dict(message.headers), timeout=15)
    except requests.ConnectionError:
        raise click.ClickException(
            f"the Broker ingress is not reachable at {target}: is the platform running?"
        ) from None
    if response.status_code != 202:
        raise click.ClickException(
            f"the Broker refused the request: HTTP {response.status_code} {response.text.strip()}"
        )
    click.echo(
        f"lake maintenance requested for {', '.join(tables) or 'every table'} (event {event.get_id()}); "
        "`coelho lake status` shows the tables"
    )
