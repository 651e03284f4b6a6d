"""The Observability page's charts: honest titles, errors drawn as 0 when there are none, legends off the lines."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import requests

from ui.observability import NONE_SERIES, LiveChart, ObservabilityData
from ui.observability_charts import CHARTS, ChartQuery, Point

ERRORS = next(c for c in CHARTS if c.title == "Errors per second")
EVENTS = CHARTS[0]


class FakeSource:
    """A metrics source answering from a table (query label -> series), or failing every query."""

    name = "fake"

    def __init__(self, series: dict[str, dict[str, list[Point]]], fail: bool = False) -> None:
        self.table = series
        self.fail = fail

    def series(self, query: ChartQuery, window_s: float) -> dict[str, list[Point]]:
        if self.fail:
            raise requests.ConnectionError("down")
        return self.table.get(query.label, {})

    def targets(self) -> dict[str, bool]:
        return {}

    def earliest(self, window_s: float) -> float | None:
        return 1000.0


def title_of(chart: LiveChart) -> str:
    heading: Any = chart.figure.title
    return str(heading.text)


def snapshot_of(source: FakeSource) -> Any:
    data = ObservabilityData(SimpleNamespace(ports={}, host="127.0.0.1", url=lambda name: ""))
    data.source = lambda: source  # type: ignore[method-assign]
    return data.snapshot([EVENTS, ERRORS])


def test_no_error_series_means_zero_errors_drawn_as_a_line() -> None:
    snap = snapshot_of(FakeSource({"learned": {"learned tfd": [(1000.0, 2.0), (1010.0, 3.0)]}}))
    errors = snap.charts["Errors per second"]
    assert list(errors) == [NONE_SERIES]
    assert [v for _, v in errors[NONE_SERIES]] == [0.0, 0.0]
    assert errors[NONE_SERIES][0][0] == 1000.0  # from where the source's data begins
    chart = LiveChart(ERRORS)
    chart.update(errors, [])
    assert title_of(chart) == "Errors per second"


def test_errors_that_happened_are_drawn_as_they_are() -> None:
    snap = snapshot_of(FakeSource({"function errors": {"function errors predict": [(1000.0, 0.5)]}}))
    assert list(snap.charts["Errors per second"]) == ["function errors predict"]


def test_a_failing_source_is_not_shown_as_zero_errors() -> None:
    snap = snapshot_of(FakeSource({}, fail=True))
    assert snap.charts["Errors per second"] == {}
    assert any(e.startswith("Errors per second") for e in snap.errors)
    chart = LiveChart(ERRORS)
    chart.update(snap.charts["Errors per second"], [])
    assert title_of(chart) == "Errors per second (no data yet)"


def test_title_says_no_data_only_while_nothing_is_drawn() -> None:
    chart = LiveChart(EVENTS)
    assert title_of(chart).endswith("(no data yet)")
    chart.update({"learned tfd": [(1.0, 4.0), (2.0, 5.0)], "produced tfd": []}, [])
    assert title_of(chart) == "Events per second"
    chart.update({"learned tfd": [], "produced tfd": []}, [])
    assert title_of(chart) == "Events per second (no data yet)"


def test_the_legend_sits_below_the_plot_not_over_its_lines() -> None:
    chart = LiveChart(EVENTS)
    chart.update({f"learned {d}": [(1.0, 1.0), (2.0, 2.0)] for d in ("tfd", "eta", "ecci")}, [])
    legends: list[Any] = [m for m in chart.figure.below if type(m).__name__ == "Legend"]
    assert len(legends) == 1 and [i.label["value"] for i in legends[0].items] == [
        "learned ecci",
        "learned eta",
        "learned tfd",
    ]
    assert not [m for m in chart.figure.center if type(m).__name__ == "Legend"]  # nothing inside the frame
    chart.update({"learned tfd": [(3.0, 1.0)], "learned new": [(3.0, 1.0)]}, [])  # a new series joins the legend
    assert len(legends[0].items) == 4
