"""`coelho sql`: read-only SQL over the lake's Delta tables, through the sql function (functions/sql.py).

    coelho sql "SELECT weather, avg(simulated_actual_travel_time_seconds) FROM trips GROUP BY 1"
    coelho sql "SELECT * FROM transactions" --limit 20 --format csv > sample.csv
    coelho sql "SELECT count(*) FROM transactions" --version 3
    coelho sql --tables

Asks the running sql function (`POST /sql`, `GET /tables`); when it is not running, runs the same engine in this
process against the platform's S3 store. An error (a refused or failing query) exits non-zero with the message.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

import click

FORMATS = ("table", "json", "csv")


class Unreachable(Exception):
    """The sql function does not answer."""


def _settings() -> Any:
    from coelho.settings import Settings

    return Settings.load()


def _http(method: str, url: str, body: Mapping[str, Any] | None = None, timeout: float = 60.0) -> dict[str, Any]:
    import requests

    try:
        from functions.middleware.auth import auth_headers

        response = requests.request(method, url, json=body, timeout=timeout, headers=auth_headers())
    except requests.ConnectionError:
        raise Unreachable(url) from None
    try:
        answer = response.json()
    except ValueError:
        answer = {"error": response.text.strip() or f"HTTP {response.status_code}"}
    if response.status_code != 200:
        raise click.ClickException(_error_text(answer, response.status_code))
    return dict(answer)


def _error_text(answer: Mapping[str, Any], status: int) -> str:
    message = answer.get("message") if answer.get("fields") else answer.get("error")
    return f"{message or answer} (HTTP {status})"


def _in_process(settings: Any, call: str, **kwargs: Any) -> dict[str, Any]:
    """The same engine in this process, against the platform's S3 store."""
    from functions.lake.catalog import LakeCatalog
    from functions.lake.sql import SqlEngine
    from functions.lake.sql_limits import Limits
    from functions.middleware.contract import error_response

    environ = settings.function_env()
    if os.environ.get("COELHO_LAKE_BUCKET"):
        environ["COELHO_LAKE_BUCKET"] = os.environ["COELHO_LAKE_BUCKET"]
    engine = SqlEngine(LakeCatalog(environ=environ), Limits.from_env())
    try:
        return engine.tables() if call == "tables" else engine.query(**kwargs)
    except Exception as exc:
        status, body = error_response("sql", exc)
        raise click.ClickException(_error_text(body, status)) from None
    finally:
        engine.close()  # before the interpreter exits: DuckDB and the store's threads end in order


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def render_table(headers: list[str], rows: list[list[Any]], max_width: int = 40) -> str:
    """A plain text table: a header, a rule, the rows; long cells are cut.

    >>> print(render_table(["weather", "n"], [["rain", 12], ["clear", 3.5]]))
    weather | n
    --------+----
    rain    | 12
    clear   | 3.5
    """
    cells = [[_cell(v) for v in row] for row in rows]
    cells = [[c if len(c) <= max_width else c[: max_width - 1] + "…" for c in row] for row in cells]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def render_csv(headers: list[str], rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)
    for row in rows:
        writer.writerow(["" if v is None else json.dumps(v) if isinstance(v, dict | list) else v for v in row])
    return out.getvalue()


def _print_result(result: Mapping[str, Any], fmt: str) -> None:
    headers = [c["name"] for c in result["columns"]]
    if fmt == "json":
        click.echo(json.dumps(result, indent=2, default=str))
        return
    if fmt == "csv":
        click.echo(render_csv(headers, result["rows"]), nl=False)
    else:
        click.echo(render_table(headers, result["rows"]))
    more = f", cut at the limit of {result['limit']}" if result.get("truncated") else ""
    versions = ", ".join(f"{t} v{v}" for t, v in sorted(result.get("versions", {}).items()))
    click.echo(
        f"{result['row_count']} row(s){more} in {result['elapsed_ms']:.0f} ms" + (f" ({versions})" if versions else ""),
        err=fmt == "csv",
    )


def _print_tables(answer: Mapping[str, Any], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(answer, indent=2, default=str))
        return
    if fmt == "csv":
        rows = [
            [t["name"], c["name"], c["type"], t["row_count"], t["version"]]
            for t in answer["tables"]
            for c in t["columns"]
        ]
        click.echo(render_csv(["table", "column", "type", "rows", "version"], rows), nl=False)
        return
    for table in answer["tables"]:
        click.echo(
            f"{table['name']} ({table['domain']}): {table['row_count']:,} rows, Delta version "
            f"{table['version']}, {table['files']} file(s), {table['uri']}"
        )
        partitions = set(table.get("partition_columns", []))
        for column in table["columns"]:
            note = "  (partition)" if column["name"] in partitions else ""
            click.echo(f"    {column['name']:<40} {column['type']}{note}")
    if answer.get("missing"):
        click.echo(f"not written yet: {', '.join(answer['missing'])}")
    if not answer["tables"]:
        click.echo("the lake has no table yet")


@click.command()
@click.argument("query", required=False)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--limit", type=int, default=None, help="rows returned at most (default: the service's, 10000)")
@click.option("--version", "version", type=int, default=None, help="read the tables at this Delta version")
@click.option("--as-of", "as_of", default=None, help="read the tables as they were at this ISO 8601 time")
@click.option("--tables", "list_tables", is_flag=True, help="list the lake's tables: columns, types, rows, versions")
@click.option("--url", default=None, help="the sql function's URL (default: the local platform's)")
def sql(
    query: str | None,
    fmt: str,
    limit: int | None,
    version: int | None,
    as_of: str | None,
    list_tables: bool,
    url: str | None,
) -> None:
    """Run a read-only SQL QUERY over the lake's Delta tables (one SELECT), or list them with --tables."""
    if not list_tables and not query:
        raise click.UsageError('give a QUERY ("SELECT ...") or --tables')
    settings = _settings()
    base = (url or settings.url("sql")).rstrip("/")
    body: dict[str, Any] = {"query": query}
    for name, value in (("limit", limit), ("version", version), ("as_of", as_of)):
        if value is not None:
            body[name] = value
    try:
        answer = _http("GET", base + "/tables") if list_tables else _http("POST", base + "/sql", body)
    except Unreachable:
        if url:
            raise click.ClickException(f"the sql function is not reachable at {url}") from None
        click.echo(f"(the sql function is not running at {base}: querying the lake from this process)", err=True)
        answer = (
            _in_process(settings, "tables")
            if list_tables
            else _in_process(settings, "query", sql=query, **{k: v for k, v in body.items() if k != "query"})
        )
    if list_tables:
        _print_tables(answer, fmt)
    else:
        _print_result(answer, fmt)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(sql())
