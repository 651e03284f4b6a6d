"""The SQL page: what it shows for an answer, a refusal and the table list (no browser), then in Chromium against
the real sql function and dashboard: browse the tables, run an example query, page through the result, chart it,
download it as CSV, and see a refused query's reason inline.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from pathlib import Path
from typing import Any

import pytest

from coelho.settings import PROJECT_ROOT, Settings
from eventing.domains import DOMAINS
from functions.lake.sql_examples import EXAMPLES
from functions.lake.tables import table_for
from ui.pages.sql import SqlPage, tables_html, unique_names

SCREENSHOTS = PROJECT_ROOT / "test-artifacts" / "screenshots"

ANSWER = {
    "columns": [
        {"name": "category", "type": "VARCHAR"},
        {"name": "transactions", "type": "BIGINT"},
        {"name": "fraud_rate", "type": "DOUBLE"},
    ],
    "rows": [["travel", 120, 0.05], ["gaming", 80, 0.0125], ["home", 3, None]],
    "row_count": 3,
    "truncated": True,
    "limit": 3,
    "elapsed_ms": 12.5,
    "versions": {"transactions": 4},
}


# --- without a browser ----------------------------------------------------------------------------------------
def test_an_answer_fills_the_table_the_status_the_chart_and_the_csv() -> None:
    page = SqlPage(Settings())
    page.show(200, ANSWER, 20.0)
    assert list(page.table.value.columns) == ["category", "transactions", "fraud_rate"] and len(page.table.value) == 3
    assert page.table.visible and page.download.visible and page.chart_card.visible
    assert "3 row(s)</b> in 12 ms" in page.status.object and "cut at the limit of 3" in page.status.object
    assert "transactions v4" in page.status.object
    assert (page.chart_x.value, page.chart_y.value) == ("category", "fraud_rate")
    assert page.chart.source.data["x"] == ["travel", "gaming"]  # the null is not drawn
    page.chart_y.value = "transactions"
    assert page.chart.source.data["y"] == [120.0, 80.0, 3.0]
    rows = list(csv.reader(io.StringIO(page._csv().read())))
    assert rows[0] == ["category", "transactions", "fraud_rate"] and rows[1] == ["travel", "120", "0.05"]
    context = page.context()
    assert (
        context["page"] == "sql"
        and context["result"]["row_count"] == 3
        and context["result"]["first_rows"][0][0] == "travel"
    )


def test_a_refusal_is_shown_inline_and_hides_the_result() -> None:
    page = SqlPage(Settings())
    page.show(200, ANSWER, 20.0)
    page.show(
        400, {"error": "syntax error: syntax error at end of input at line 1, column 8:\n  SELECT \n         ^"}, 5.0
    )
    assert "Query refused (HTTP 400)" in page.status.object and "line 1, column 8" in page.status.object
    assert not page.table.visible and not page.download.visible and not page.chart_card.visible
    assert page.context()["error"].startswith("syntax error")


def test_numbers_only_chart_their_first_column_as_categories() -> None:
    page = SqlPage(Settings())
    answer = {
        **ANSWER,
        "columns": [{"name": "hour", "type": "BIGINT"}, {"name": "rate", "type": "DOUBLE"}],
        "rows": [[0, 0.1], [1, 0.2]],
        "row_count": 2,
        "truncated": False,
    }
    page.show(200, answer, 1.0)
    assert (page.chart_x.value, page.chart_y.value) == ("hour", "rate") and page.chart.source.data["x"] == ["0", "1"]


def test_the_table_browser_lists_columns_types_rows_versions_and_missing_tables() -> None:
    answer = {
        "tables": [
            {
                "name": "trips",
                "domain": "eta",
                "uri": "s3://delta-lake/trips",
                "version": 7,
                "row_count": 12345,
                "files": 3,
                "in_memory": True,
                "partition_columns": ["event_date"],
                "columns": [{"name": "weather", "type": "VARCHAR"}, {"name": "event_date", "type": "VARCHAR"}],
                "versions": [{"version": 7, "operation": "WRITE", "timestamp": "2026-03-01T10:00:00+00:00"}],
            }
        ],
        "missing": ["transactions"],
    }
    text = tables_html(answer)
    assert "<b>trips</b>" in text and "12,345 rows · version 7 · 3 file(s) · in memory" in text
    assert "<code>weather</code>" in text and "VARCHAR · partition" in text and "v7 WRITE 2026-03-01T10:00:00" in text
    assert "Not written yet: transactions" in text
    assert "no table yet" in tables_html({"tables": [], "missing": ["trips"]})
    assert unique_names(["a", "a", "a"]) == ["a", "a_2", "a_3"]


def test_the_examples_cover_every_domain_and_the_request_carries_limit_and_version() -> None:
    page = SqlPage(Settings())
    assert {e.domain for e in EXAMPLES} == set(DOMAINS)
    page.examples.value = EXAMPLES[-1].sql
    assert page.editor.value == EXAMPLES[-1].sql
    page.limit.value, page.version.value = 50, "3"
    assert page.request_body() == {"query": EXAMPLES[-1].sql, "limit": 50, "version": 3}


# --- in Chromium, against the real services -------------------------------------------------------------------
def _write_missing_tables(settings: Settings) -> None:
    """Each domain's lake table from generated records, unless the lake already has it (then it is used as is)."""
    import deltalake
    import pyarrow as pa
    from deltalake.exceptions import TableNotFoundError

    from functions.lake.tables import storage_options, table_uri
    from producers.generators import make_generator

    env = settings.function_env()
    for name, domain in DOMAINS.items():
        uri = table_uri(table_for(name), environ=env)
        try:
            deltalake.DeltaTable(uri, storage_options=storage_options(env))
            continue
        except TableNotFoundError:
            pass
        declared = dict(domain.leaf_fields())
        rows = []
        for event in make_generator(name, seed=3, start="2026-03-01T00:00:00Z").take(300):
            if event.kind != "record":
                continue
            row: dict[str, Any] = {}
            for path, field in declared.items():
                value: Any = event.data
                for part in path.split("."):
                    value = value.get(part) if isinstance(value, dict) else None
                if field.type == "timestamp" and isinstance(value, str):
                    value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
                row[path.replace(".", "_")] = value
            row["event_date"] = dt.datetime.fromtimestamp(event.time, dt.UTC).date().isoformat()
            rows.append(row)
        deltalake.write_deltalake(
            uri, pa.Table.from_pylist(rows), partition_by=["event_date"], storage_options=storage_options(env)
        )


@pytest.fixture(scope="module")
def sql_dashboard(platform: Any) -> Any:
    platform.start(["s3"])
    _write_missing_tables(platform.settings)
    platform.start(["sql", "dashboard"])
    return platform


def _screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.set_viewport_size({"width": 1500, "height": 1700})
    page.wait_for_timeout(500)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1500, "height": 1000})
    return path


@pytest.mark.stack
@pytest.mark.browser
def test_the_sql_page_runs_an_example_charts_it_downloads_it_and_shows_a_refusal(sql_dashboard: Any, page: Any) -> None:
    page.goto(sql_dashboard.settings.url("dashboard") + "/sql")
    page.get_by_text("Run query").first.wait_for()
    page.locator(".sql-tables details.lake-table").first.wait_for()  # the table browser, loaded after the page
    assert page.locator("details[data-table='transactions']").count() == 1

    page.get_by_role("button", name="Run query").click()  # the first example: fraud rate by product category
    page.locator(".sql-meta").first.wait_for()
    meta = page.locator(".sql-meta").first.inner_text()
    assert "row(s)" in meta and " ms" in meta and "transactions v" in meta
    page.locator(".tabulator .tabulator-row").first.wait_for()  # the result table (the page's only one)
    assert page.locator(".tabulator .tabulator-col-title").filter(has_text="fraud_rate").count() == 1
    page.get_by_text("Quick chart").first.wait_for()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows[0] == ["category", "transactions", "fraud_rate"] and len(rows) > 1
    _screenshot(page, "sql-page")

    editor = page.locator(".sql-editor textarea").first
    editor.fill("SELECT * FROM read_csv('/etc/passwd')")
    editor.blur()
    time.sleep(0.3)
    page.get_by_role("button", name="Run query").click()
    page.locator(".sql-error").first.wait_for()
    assert "table function read_csv is not allowed" in page.locator(".sql-error").first.inner_text()
    assert not page.locator(".tabulator").first.is_visible()
    _screenshot(page, "sql-page-refused")
    assert not page.errors  # type: ignore[attr-defined]


@pytest.mark.stack
@pytest.mark.browser
def test_the_result_table_turns_its_pages(sql_dashboard: Any, page: Any) -> None:
    """45 rows in pages of 20: the first page, then the second and the last from the pager's buttons."""
    from ui.pages.sql import PAGE_SIZE

    page.goto(sql_dashboard.settings.url("dashboard") + "/sql")
    page.get_by_text("Run query").first.wait_for()
    editor = page.locator(".sql-editor textarea").first
    editor.fill("SELECT range AS n, range * range AS square FROM range(45) ORDER BY n")
    editor.blur()
    time.sleep(0.3)
    page.get_by_role("button", name="Run query").click()
    page.locator(".sql-meta").first.wait_for()
    assert "45 row(s)" in page.locator(".sql-meta").first.inner_text()
    rows = page.locator(".tabulator .tabulator-row")

    def first_cells() -> list[str]:
        """The n column of the rows on show (a row's text is its visible cells, one a line: the hidden index
        column's is not in it)."""
        return [text.split("\n")[0].strip() for text in rows.all_inner_texts()]

    def shows(first: int, count: int) -> bool:
        cells = first_cells()
        return len(cells) == count and cells[0] == str(first)

    def wait_for(first: int, count: int) -> None:
        deadline = time.monotonic() + 30
        while not shows(first, count):
            assert time.monotonic() < deadline, first_cells()
            time.sleep(0.2)

    wait_for(0, PAGE_SIZE)
    assert first_cells() == [str(n) for n in range(PAGE_SIZE)]
    pager = page.locator(".tabulator-paginator")
    pager.locator("button[data-page='next']").click()
    wait_for(PAGE_SIZE, PAGE_SIZE)
    assert first_cells() == [str(n) for n in range(PAGE_SIZE, 2 * PAGE_SIZE)]
    pager.locator("button[data-page='last']").click()
    wait_for(2 * PAGE_SIZE, 45 - 2 * PAGE_SIZE)
    assert pager.locator("button.tabulator-page.active").inner_text().strip() == "3"
    _screenshot(page, "sql-page-paged")
    assert not page.errors  # type: ignore[attr-defined]
