"""The assistant's query_lake tool: the same engine, through the sql function's HTTP route, with tighter limits.

The sql function's app is served in a thread (no process) over a lake on a local path; the tool is called the way
the chat function calls it (`ToolBox.run`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import deltalake
import pyarrow as pa
import pytest
from werkzeug.serving import make_server

from coelho.settings import Settings
from functions.assistant.data import PlatformReader
from functions.assistant.redaction import SecretRedactor
from functions.assistant.tools import LAKE_QUERY_ROWS, TOOLS, ToolBox, ToolInputError, validate_input
from functions.lake.catalog import LakeCatalog
from functions.lake.sql import SqlEngine
from functions.sql import create


@pytest.fixture(scope="module")
def sql_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("lake")
    categories = ["electronics", "travel", "gaming"] * 400
    table = pa.table({"product_category": categories, "is_fraud": [i % 7 == 0 for i in range(len(categories))]})
    deltalake.write_deltalake(str(root / "transactions"), table)
    server = make_server("127.0.0.1", 0, create(SqlEngine(LakeCatalog(root=str(Path(root))))), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


@pytest.fixture
def toolbox(sql_url: str) -> ToolBox:
    reader = PlatformReader(Settings(), environ={"SQL_URL": sql_url})
    return ToolBox(reader, {}, SecretRedactor.from_environ({}))


def run(toolbox: ToolBox, **tool_input: Any) -> tuple[Any, bool]:
    text, is_error = toolbox.run("query_lake", tool_input)
    return json.loads(text), is_error


def test_the_tool_is_registered_read_only_and_bounded() -> None:
    schema = TOOLS["query_lake"].input_schema
    assert schema["required"] == ["query"] and schema["properties"]["limit"]["maximum"] == LAKE_QUERY_ROWS == 200
    assert "transactions (tfd)" in TOOLS["query_lake"].description
    with pytest.raises(ToolInputError, match="limit must be between 1 and 200"):
        validate_input("query_lake", {"query": "SELECT 1", "limit": 201})
    with pytest.raises(ToolInputError, match="query is too long"):
        validate_input("query_lake", {"query": "SELECT 1" + " " * 5_000})
    validate_input("query_lake", {"query": "SELECT 1" + " " * 1_000})  # longer than other tools' strings


def test_an_aggregate_comes_back_as_columns_and_rows(toolbox: ToolBox) -> None:
    result, is_error = run(
        toolbox, query="SELECT product_category, count(*) AS n FROM transactions GROUP BY 1 ORDER BY 1"
    )
    assert not is_error
    assert result["rows"] == [["electronics", 400], ["gaming", 400], ["travel", 400]]
    assert [c["name"] for c in result["columns"]] == ["product_category", "n"]
    assert result["versions"] == {"transactions": 0} and result["truncated"] is False


def test_rows_are_cut_at_the_tools_limit(toolbox: ToolBox) -> None:
    result, is_error = run(toolbox, query="SELECT * FROM transactions")
    assert not is_error and result["row_count"] == 50 and result["truncated"] is True
    result, _ = run(toolbox, query="SELECT * FROM transactions", limit=200)
    assert result["row_count"] == 200 and result["truncated"] is True


def test_a_refused_query_is_an_error_result_with_the_reason(toolbox: ToolBox) -> None:
    result, is_error = run(toolbox, query="DROP VIEW transactions")
    assert is_error and result["error"].startswith("query refused (HTTP 400): DROP is not allowed")
    result, is_error = run(toolbox, query="SELECT categry FROM transactions")
    assert is_error and "columns of transactions: product_category, is_fraud" in result["error"]


@pytest.mark.slow  # waits for a real time limit
def test_the_tool_asks_for_the_tighter_time_limit(toolbox: ToolBox) -> None:
    result, is_error = run(toolbox, query="SELECT count(*) FROM range(100000000) a, range(100000000) b")
    assert is_error and "time limit of 5 s" in result["error"]


def test_an_unreachable_sql_function_is_an_error_result() -> None:
    reader = PlatformReader(Settings(), environ={"SQL_URL": "http://127.0.0.1:9"})
    result, is_error = run(ToolBox(reader, {}, SecretRedactor.from_environ({})), query="SELECT 1")
    assert is_error and "the sql function is not reachable" in result["error"]
