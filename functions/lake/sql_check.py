"""Whether a SQL query may run, judged by DuckDB's own parser (`duckdb.extract_statements` and
`json_serialize_sql`): exactly one statement, a SELECT (or WITH ... SELECT, VALUES, DESCRIBE, SUMMARIZE); table
functions only from `SAFE_TABLE_FUNCTIONS` (no read_csv, read_parquet, glob, query, ...); no file or URL read as a
table. The engine's connections are locked down underneath (functions/lake/sql.py), whatever passes here.

    >>> import duckdb
    >>> sorted(check_query(duckdb.connect(), "WITH t AS (SELECT 1) SELECT * FROM trips, t").tables)
    ['trips']
    >>> try:
    ...     check_query(duckdb.connect(), "DROP TABLE trips")
    ... except SqlError as exc:
    ...     print(exc)
    DROP is not allowed: only one SELECT query (or WITH ... SELECT) runs here, read-only
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from functions.lake.sql_limits import Limits, SqlError

# Table functions a query may call: they generate values and reach nothing outside the query.
SAFE_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
_FILE_LIKE = re.compile(r"[/\\:]|\.(csv|tsv|txt|parquet|json|jsonl|ndjson|gz|zst|db|duckdb|xlsx|arrow)$", re.IGNORECASE)


@dataclass
class CheckedQuery:
    text: str
    tables: set[str] = field(default_factory=set)  # names read as tables (lake tables or not), CTEs excluded
    ctes: set[str] = field(default_factory=set)


def _position(query: str, offset: int) -> str:
    """The text " at line L, column C:" and the line with a caret under the character at `offset`."""
    offset = max(0, min(offset, len(query)))
    line_no = query.count("\n", 0, offset) + 1
    start = query.rfind("\n", 0, offset) + 1
    end = query.find("\n", offset)
    line = query[start:] if end < 0 else query[start:end]
    column = offset - start
    return f" at line {line_no}, column {column + 1}:\n  {line}\n  {' ' * column}^"


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def check_query(connection: Any, query: str, max_chars: int = Limits.max_query_chars) -> CheckedQuery:
    """The query if it is one read-only SELECT, else SqlError saying why (syntax error with its position, the
    forbidden statement or table function)."""
    import duckdb

    if not query.strip():
        raise SqlError("the query is empty: write one SELECT statement")
    if len(query) > max_chars:
        raise SqlError(f"the query is {len(query)} characters long: at most {max_chars}")
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.ParserException:
        statements = None  # worded below, with its position
    if statements is not None:
        if len(statements) != 1:
            raise SqlError(f"exactly one statement per query: this has {len(statements)}")
        statement = statements[0]
        if statement.type != duckdb.StatementType.SELECT:
            keyword = (statement.query.split() or ["?"])[0].upper()
            read_as = "" if keyword == statement.type.name else f" (a {statement.type.name} statement)"
            raise SqlError(
                f"{keyword} is not allowed{read_as}: only one SELECT query (or WITH ... SELECT) runs here, read-only"
            )
    row = connection.execute("SELECT json_serialize_sql(?)", [query]).fetchone()
    tree: dict[str, Any] = json.loads(str(row[0])) if row else {"error": True, "error_message": "cannot parse"}
    if tree.get("error"):
        message = str(tree.get("error_message", "cannot parse"))
        if tree.get("error_type") == "parser":
            where = _position(query, int(tree["position"])) if str(tree.get("position", "")).isdigit() else ""
            raise SqlError(f"syntax error: {message}{where}")
        keyword = (query.split() or ["?"])[0].upper()
        raise SqlError(f"{keyword} is not allowed: only one SELECT query (or WITH ... SELECT) runs here, read-only")
    checked = CheckedQuery(query)
    for node in _walk(tree["statements"]):
        kind = node.get("type")
        if kind == "TABLE_FUNCTION":
            function = node.get("function") or {}
            name = str(function.get("function_name", "?"))
            if name.lower() not in SAFE_TABLE_FUNCTIONS:
                raise SqlError(
                    f"table function {name} is not allowed: queries read the lake's tables only "
                    f"(allowed table functions: {', '.join(sorted(SAFE_TABLE_FUNCTIONS))})"
                )
        elif kind == "BASE_TABLE":
            if node.get("at_clause"):
                raise SqlError(
                    "AT (VERSION => ...) is not supported here: send `version` (or `as_of`) with the query "
                    "to read the tables as they were"
                )
            name = str(node.get("table_name", ""))
            if _FILE_LIKE.search(name):  # DuckDB would read it as a file (a replacement scan)
                raise SqlError(f"reading a file or URL ({name}) is not allowed: queries read the lake's tables only")
            if not node.get("schema_name") and not node.get("catalog_name"):
                checked.tables.add(name)
        if isinstance(node.get("cte_map"), dict):
            checked.ctes |= {str(entry["key"]) for entry in node["cte_map"].get("map", [])}
    checked.tables -= checked.ctes
    return checked
