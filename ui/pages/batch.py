"""Batch: the batch studies of a domain (functions/batch), read from MLflow, and a button that starts one.

Pick a domain and one of its latest studies: the metrics table (batch, River progressive, River frozen, gaps),
the study's notes and its figures (PNG artifacts of the run). "Start a study" runs `coelho batch train DOMAIN` as
a subprocess of the dashboard, never inside a request: its progress lines are shown as they come, and the study
list is refreshed when it ends. MLflow is read from a worker thread.
"""

from __future__ import annotations

import asyncio
import html
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import panel as pn

from coelho.settings import Settings
from eventing.domains import DOMAINS as DECLARED
from ui.layout import card, flow

DOMAINS = tuple(DECLARED)  # every declared domain: a study is chosen by the domain's task
RUNS = 10
PROGRESS_LINES = 12


class BatchPage:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = settings.function_env()
        self.reports: list[dict[str, Any]] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.outcome = ""  # how the last study started here ended, kept in the status once the list is read again
        self.log_path = Path(tempfile.mkdtemp(prefix="coelho-batch-")) / "study.log"
        self.domain = pn.widgets.Select(
            name="Domain", options=list(DOMAINS), value="tfd", width=140, css_classes=["batch-domain"]
        )
        self.run = pn.widgets.Select(name="Study", options={}, width=420, css_classes=["batch-run"])
        self.refresh = pn.widgets.Button(name="Refresh", width=90)
        self.start = pn.widgets.Button(
            name="Start a study", button_type="primary", width=130, css_classes=["batch-start"]
        )
        self.status = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["batch-status"])
        self.progress = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["batch-progress"])
        self.table = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["batch-table"])
        self.figures = pn.FlexBox(
            flex_wrap="wrap", sizing_mode="stretch_width", css_classes=["batch-figures"]
        )  # two per row where they fit
        self.domain.param.watch(lambda _e: self._schedule(self.load_runs), "value")
        self.run.param.watch(lambda _e: self._schedule(self.show_run), "value")
        self.refresh.on_click(lambda _e: self._schedule(self.load_runs))
        self.start.on_click(self._start)

    # --- MLflow, in a worker thread ---------------------------------------------------------------------------
    @staticmethod
    def _schedule(coro: Any) -> None:
        asyncio.ensure_future(coro())

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def load_runs(self) -> None:
        from functions.batch.report import reports

        self.status.object = "reading the studies from MLflow…"
        try:
            self.reports = await self._in_thread(reports, self.domain.value, RUNS, self.env)
        except Exception as exc:
            self.status.object = f"<span style='color:#b42318'>⚠ MLflow: {html.escape(str(exc)[:300])}</span>"
            return
        options = {
            f"{r['run_name']} · {_when(r['started'])} · v{r['model_version']}": r["run_id"] for r in self.reports
        }
        listed = (
            f"{len(self.reports)} studies of {self.domain.value}"
            if self.reports
            else f"no study of {self.domain.value} yet: start one"
        )
        self.status.object = f"{self.outcome} · {listed}" if self.outcome else listed
        self.run.options = options
        self.run.value = next(iter(options.values()), None)
        await self.show_run()

    async def show_run(self) -> None:
        from functions.batch.report import figure_png, metrics_table

        found = next((r for r in self.reports if r["run_id"] == self.run.value), None)
        if found is None:
            self.table.object, self.figures.objects = "", []
            return
        self.table.object = table_html(found, metrics_table(found))
        panes: list[Any] = []
        for figure in found["figures"]:
            try:
                png = await self._in_thread(figure_png, found["run_id"], figure, self.env)
            except Exception as exc:
                panes.append(pn.pane.HTML(f"{figure}: {html.escape(str(exc)[:200])}"))
                continue
            panes.append(pn.Column(pn.pane.HTML(f"<b>{figure}</b>"), pn.pane.PNG(png, width=520)))
        self.figures.objects = panes

    # --- a study in the background ----------------------------------------------------------------------------
    def _start(self, _event: Any = None) -> None:
        if self.process is not None and self.process.poll() is None:
            self.status.object = "a study is already running"
            return
        env = {**self.env, **self.settings.to_environ(), "PYTHONUNBUFFERED": "1"}
        import os

        command = [sys.executable, "-c", "from coelho.cli import main; main()", "batch", "train", self.domain.value]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
        self.outcome = ""
        self.status.object = f"study of {self.domain.value} started (pid {self.process.pid})"
        pn.state.add_periodic_callback(self._poll, period=1000, count=3600)

    def _poll(self) -> None:
        lines = (
            self.log_path.read_text(errors="replace").splitlines()[-PROGRESS_LINES:] if self.log_path.exists() else []
        )
        self.progress.object = "<pre style='font-size:12px'>" + html.escape("\n".join(lines)) + "</pre>"
        if self.process is not None and self.process.poll() is not None:
            code = self.process.returncode
            self.outcome = "study finished" if code == 0 else f"study failed (exit {code}): see its output"
            self.status.object = self.outcome
            self.process = None
            self._schedule(self.load_runs)

    def layout(self) -> list[Any]:
        return [
            card(
                flow(self.domain, self.run, self.refresh, self.start),
                self.status,
                self.progress,
                title="Batch studies",
            ),
            card(self.table, title="Online vs batch on the same test window"),
            card(self.figures, title="Diagnostics"),
        ]

    def context(self) -> dict[str, Any]:
        """What the assistant is told about this page."""
        found = next((r for r in self.reports if r["run_id"] == self.run.value), None)
        return {
            "page": "batch",
            "domain": self.domain.value,
            "study": {k: found[k] for k in ("run_id", "metrics", "gap", "notes")} if found else None,
        }


def _when(started_ms: Any) -> str:
    import datetime as dt

    try:
        return dt.datetime.fromtimestamp(int(started_ms) / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError):
        return "?"


def table_html(report: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, int | float) else "–"

    head = "".join(
        f"<th style='padding:2px 10px'>{h}</th>"
        for h in ("metric", "batch", "River progressive", "River frozen", "gap vs progressive", "gap vs frozen")
    )
    body = "".join(
        "<tr>"
        + f"<td>{html.escape(r['metric'])}</td>"
        + "".join(
            f"<td style='text-align:right;padding:2px 10px'>{cell(r[k])}</td>"
            for k in ("batch", "online_progressive", "online_frozen", "gap_vs_progressive", "gap_vs_frozen")
        )
        + "</tr>"
        for r in rows
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.get("notes", []))
    return (
        f"<p>{html.escape(str(report['model']))} on table version {report['table_version']}: train "
        f"{report['train_rows']} rows before {html.escape(str(report['split_time']))}, test {report['test_rows']} "
        f"rows; registered version {report['model_version']}</p>"
        f"<table style='font-size:13px'><tr>{head}</tr>{body}</table>" + (f"<ul>{notes}</ul>" if notes else "")
    )


def build(settings: Settings) -> tuple[list[Any], Any]:
    page = BatchPage(settings)
    pn.state.onload(page.load_runs)
    return page.layout(), page.context
