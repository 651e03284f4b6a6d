"""SQL: read-only queries over the lake's Delta tables, answered by the sql function (functions/sql.py).

A table browser (every table with its columns, types, rows, Delta version and recent versions), an editor with
example queries per domain (functions/lake/sql_examples.py), the result in a paginated table with its row count and
time, a CSV download, the error inline when the query is refused, and a quick bar chart of one category column and
one number column. The page calls the sql function only when asked (loading the page, Run, Refresh), from a
worker thread: a long query never holds the dashboard's event loop; with the bearer token when COELHO_API_TOKEN is
set (`auth_headers()`).
"""

from __future__ import annotations

import asyncio
import html
import io
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import panel as pn
import requests

from coelho.settings import Settings
from eventing.domains import DOMAINS
from functions.lake.sql_examples import EXAMPLES
from functions.middleware.auth import auth_headers
from ui.charts import BarChart
from ui.layout import card, flow, grow
from ui.panel_adapters import tabulator_stylesheet

log = logging.getLogger("coelho.ui.sql")

MUTED = "#6b7280"
DEFAULT_LIMIT = 1_000
PAGE_SIZE = 20
CHART_BARS = 30
NUMBER_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "FLOAT",
    "DOUBLE",
    "REAL",
    "DECIMAL",
)
EDITOR_CSS = ":host textarea { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; }"
TABLES_CSS = """
.lake-table { border-top: 1px solid #eef0f3; padding: 6px 2px; }
.lake-table summary { cursor: pointer; font-size: 14px; }
.lake-table code { font-size: 12px; }
.lake-table .cols { columns: 2; font-size: 12px; color: #374151; margin: 4px 0 0 14px; }
.lake-table .versions { font-size: 12px; color: #6b7280; margin: 4px 0 0 14px; }
"""


def is_number(duckdb_type: str) -> bool:
    return duckdb_type.upper().startswith(NUMBER_TYPES)


def unique_names(names: list[str]) -> list[str]:
    """Column names made unique for the table widget (`n`, `n_2`, ...).

    >>> unique_names(["n", "n", "x"])
    ['n', 'n_2', 'x']
    """
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def tables_html(answer: Mapping[str, Any]) -> str:
    """The table browser: per table its domain, rows, Delta version and files, then its columns and versions."""
    parts = []
    for t in answer.get("tables", []):
        title = DOMAINS[t["domain"]].title if t["domain"] in DOMAINS else t["domain"]
        partitions = set(t.get("partition_columns", []))
        columns = "".join(
            f"<div><code>{html.escape(c['name'])}</code> <span style='color:{MUTED}'>{html.escape(c['type'])}"
            f"{' · partition' if c['name'] in partitions else ''}</span></div>"
            for c in t["columns"]
        )
        versions = ", ".join(
            f"v{v['version']} {html.escape(str(v.get('operation') or ''))} {html.escape(v['timestamp'][:19])}"
            for v in t.get("versions", [])[:5]
        )
        parts.append(
            f"<details class='lake-table' data-table='{html.escape(t['name'])}'><summary><b>{html.escape(t['name'])}</b>"
            f" <span style='color:{MUTED}'>({html.escape(title)}) · {t['row_count']:,} rows · version {t['version']}"
            f" · {t['files']} file(s){' · in memory' if t.get('in_memory') else ''}</span></summary>"
            f"<div class='cols'>{columns}</div><div class='versions'>recent versions: {versions}</div></details>"
        )
    missing = answer.get("missing", [])
    if missing:
        parts.append(
            f"<div style='color:{MUTED};font-size:12px;margin-top:6px'>Not written yet: "
            f"{html.escape(', '.join(missing))}</div>"
        )
    if not answer.get("tables"):
        parts.insert(
            0,
            "<div class='lake-empty'>The lake has no table yet: the lake function writes them as events arrive.</div>",
        )
    return "".join(parts)


class SqlPage:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.url("sql")
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
        self.tables_pane = pn.pane.HTML(
            "<span style='color:#6b7280'>Loading the lake's tables…</span>",
            sizing_mode="stretch_width",
            stylesheets=[TABLES_CSS],
            css_classes=["sql-tables"],
        )
        self.refresh_button = pn.widgets.Button(name="Refresh tables", button_type="light", width=140)
        self.refresh_button.on_click(self._refresh_tables)
        options = {f"{DOMAINS[e.domain].title}: {e.title}": e.sql for e in EXAMPLES}
        self.examples = pn.widgets.Select(name="Example queries", options=options, value=EXAMPLES[0].sql)
        self.examples.param.watch(self._example_chosen, "value")
        self.editor = pn.widgets.TextAreaInput(
            name="Query (one read-only SELECT, DuckDB SQL)",
            value=EXAMPLES[0].sql,
            height=190,
            sizing_mode="stretch_width",
            stylesheets=[EDITOR_CSS],
            css_classes=["sql-editor"],
        )
        self.limit = pn.widgets.IntInput(name="Row limit", value=DEFAULT_LIMIT, start=1, end=100_000, width=130)
        self.version = pn.widgets.TextInput(name="Delta version (time travel)", placeholder="latest", width=190)
        self.run_button = pn.widgets.Button(name="Run query", button_type="primary", width=140)
        self.run_button.on_click(self._run)
        self.status = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["sql-status"])
        self.table = pn.widgets.Tabulator(
            None,
            pagination="remote",
            layout="fit_data_stretch",
            page_size=PAGE_SIZE,
            show_index=False,
            disabled=True,
            sizing_mode="stretch_width",
            visible=False,
            css_classes=["sql-result"],
            stylesheets=[tabulator_stylesheet()],
        )
        self.download = pn.widgets.FileDownload(
            callback=self._csv,
            filename="query.csv",
            label="Download CSV",
            button_type="default",
            width=160,
            visible=False,
        )
        self.chart = BarChart("", height=280)
        self.chart_x = pn.widgets.Select(name="Category column", options=[], width=220)
        self.chart_y = pn.widgets.Select(name="Number column", options=[], width=220)
        self.chart_x.param.watch(self._draw_chart, "value")
        self.chart_y.param.watch(self._draw_chart, "value")
        self.chart_card = card(
            pn.Row(self.chart_x, self.chart_y), pn.pane.Bokeh(self.chart.figure), title="Quick chart", visible=False
        )

    # --- the sql function -----------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        try:
            response = requests.request(method, self.url + path, json=body, headers=auth_headers(), timeout=60)
        except requests.RequestException:
            return 0, {"error": f"the sql function is not reachable at {self.url}: is it running? (coelho up)"}
        try:
            return response.status_code, dict(response.json())
        except ValueError:
            return response.status_code, {"error": f"HTTP {response.status_code}"}

    async def _in_thread(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> tuple[int, dict]:
        return await asyncio.get_running_loop().run_in_executor(None, self._call, method, path, body)

    @staticmethod
    def _with_lock(fn: Callable[[], None]) -> None:
        """Run `fn` where it may change the page's Bokeh models: the session's next tick (which holds the document
        lock; the code after an await does not), or at once without a session."""
        doc = pn.state.curdoc
        if doc is None or getattr(doc, "session_context", None) is None:
            fn()
        else:
            doc.add_next_tick_callback(fn)

    # --- the table browser ----------------------------------------------------------------------------------
    async def load_tables(self) -> None:
        status, answer = await self._in_thread("GET", "/tables")
        if status == 200:
            text = tables_html(answer)
        else:
            text = f"<span style='color:#b42318'>⚠ {html.escape(str(answer.get('error')))}</span>"
        self._with_lock(lambda: setattr(self.tables_pane, "object", text))

    async def _refresh_tables(self, event: Any = None) -> None:
        await self.load_tables()

    # --- queries --------------------------------------------------------------------------------------------
    def _example_chosen(self, event: Any) -> None:
        self.editor.value = event.new

    def request_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"query": self.editor.value or "", "limit": int(self.limit.value or DEFAULT_LIMIT)}
        version = (self.version.value or "").strip()
        if version:
            body["version"] = int(version) if version.isdigit() else version
        return body

    async def _run(self, event: Any = None) -> None:
        self.status.object = f"<span style='color:{MUTED}'>Running…</span>"
        self.run_button.disabled = True
        started = time.perf_counter()
        status, answer = await self._in_thread("POST", "/sql", self.request_body())
        elapsed_ms = (time.perf_counter() - started) * 1000

        def update() -> None:
            try:
                self.show(status, answer, elapsed_ms)
            except Exception:  # a bug must never put a traceback on screen
                log.exception("showing a SQL result failed")
                self.status.object = "<span style='color:#b42318'>Something went wrong; see the dashboard log.</span>"
            finally:
                self.run_button.disabled = False

        self._with_lock(update)

    def show(self, status: int, answer: Mapping[str, Any], round_trip_ms: float) -> None:
        """The answer of the sql function: the rows, or the reason of a refusal."""
        if status != 200:
            reason = answer.get("message") if answer.get("fields") else answer.get("error")
            self.error, self.result = str(reason), None
            self.status.object = (
                "<div role='alert' class='sql-error' style='color:#b42318'>⚠ Query refused"
                f"{f' (HTTP {status})' if status else ''}:<pre style='white-space:pre-wrap;margin:4px 0 0 0;"
                f"font-size:12.5px'>{html.escape(str(reason))}</pre></div>"
            )
            self.table.visible = self.download.visible = self.chart_card.visible = False
            return
        import pandas as pd

        self.error, self.result = None, dict(answer)
        names = unique_names([c["name"] for c in answer["columns"]])
        rows = [[json.dumps(v) if isinstance(v, dict | list) else v for v in row] for row in answer["rows"]]
        self.table.value = pd.DataFrame(rows, columns=names)
        self.table.visible = self.download.visible = True
        cut = (
            f" · <b>cut at the limit of {answer['limit']:,}</b> (raise the row limit or aggregate)"
            if answer.get("truncated")
            else ""
        )
        versions = ", ".join(f"{t} v{v}" for t, v in sorted(answer.get("versions", {}).items()))
        self.status.object = (
            f"<span class='sql-meta' style='color:{MUTED}'><b style='color:#111827'>{answer['row_count']:,} row(s)</b>"
            f" in {answer['elapsed_ms']:.0f} ms (round trip {round_trip_ms:.0f} ms){cut}"
            f"{f' · read {html.escape(versions)}' if versions else ''}</span>"
        )
        types = {n: c["type"] for n, c in zip(names, answer["columns"], strict=True)}
        numbers = [n for n in names if is_number(types[n])]
        categories = [n for n in names if n not in numbers]
        if not categories and len(numbers) > 1:  # e.g. hour and a rate: the first number is the category
            categories, numbers = numbers[:1], numbers[1:]
        if numbers and categories and answer["row_count"] > 0:
            self.chart_x.options, self.chart_y.options = categories, numbers
            self.chart_x.value, self.chart_y.value = categories[0], numbers[-1] if len(numbers) > 1 else numbers[0]
            self.chart_card.visible = True
            self._draw_chart()
        else:
            self.chart_card.visible = False

    def _draw_chart(self, event: Any = None) -> None:
        frame = self.table.value
        x, y = self.chart_x.value, self.chart_y.value
        if frame is None or x not in frame or y not in frame:
            return
        values: dict[str, float] = {}
        for key, value in zip(frame[x].head(CHART_BARS * 10), frame[y].head(CHART_BARS * 10), strict=True):
            if value is None or value != value:  # null or NaN
                continue
            label = str(key)
            if label in values or len(values) < CHART_BARS:
                values[label] = values.get(label, 0.0) + float(value)
        self.chart.figure.title.text = f"{y} by {x}" + (f" (first {CHART_BARS})" if len(frame) > CHART_BARS else "")
        self.chart.update(values)

    def _csv(self) -> io.StringIO:
        out = io.StringIO()
        if self.table.value is not None:
            self.table.value.to_csv(out, index=False)
        out.seek(0)
        return out

    # --- the page -------------------------------------------------------------------------------------------
    def context(self) -> dict[str, Any]:
        """What the assistant is told about this page."""
        out: dict[str, Any] = {"page": "sql", "query": (self.editor.value or "")[:2_000]}
        if self.error:
            out["error"] = self.error[:1_000]
        elif self.result:
            out["result"] = {
                "columns": self.result["columns"],
                "row_count": self.result["row_count"],
                "truncated": self.result["truncated"],
                "first_rows": self.result["rows"][:5],
            }
        return out

    def layout(self) -> list[Any]:
        intro = pn.pane.HTML(
            "<div style='font-size:14px;color:#374151'>Read-only SQL (DuckDB) over the lake: every event of the "
            "three streams in Delta tables on S3, nested fields flattened with <code>_</code>. One SELECT per query; "
            "rows, time and memory are limited. A Delta version reads a table as it was.</div>",
            sizing_mode="stretch_width",
        )
        browser = card(self.tables_pane, self.refresh_button, title="Tables")
        editor = card(
            self.examples,
            self.editor,
            flow(self.limit, self.version, self.run_button, align_items="flex-end"),
            self.status,
            title="Query",
        )
        results = card(self.table, self.download, title="Result")
        main = pn.Column(
            intro,
            flow(
                grow(pn.Column(editor, results, self.chart_card, sizing_mode="stretch_width"), 560),
                grow(pn.Column(browser, sizing_mode="stretch_width"), 320, max_width=420),
            ),
            sizing_mode="stretch_width",
        )
        return [main]


def build(settings: Settings) -> tuple[list[Any], Any]:
    page = SqlPage(settings)
    pn.state.onload(page.load_tables)
    return page.layout(), page.context
