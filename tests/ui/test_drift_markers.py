"""A detected drift is marked on each domain page's metric charts, not only on the Observability page.

The real page objects are built with a live snapshot (ui.live.DomainLive, as the poller publishes it) whose
`drifts_at` lists where drift was detected; the test opens the "Metric charts" tab and inspects the Bokeh
figures: every main-metric chart carries one vertical marker at each drift position, and a drift detected later
appears on the next refresh, once; when the model starts again (restored, Redis emptied), markers of drifts no
longer in the live data disappear.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bokeh.models.annotations import Span

from coelho.settings import Settings
from eventing.domains import DOMAINS
from ui.live import DomainLive, LiveData
from ui.pages.domain_page import DomainPage
from ui.pages.ecci import EcommercePage
from ui.pages.eta import EtaPage
from ui.pages.tfd import FraudPage

PAGES: dict[str, Callable[[Settings], DomainPage]] = {"tfd": FraudPage, "eta": EtaPage, "ecci": EcommercePage}


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveData]:
    """The process-wide LiveData, never started: the test publishes the snapshots the poller would."""
    settings = Settings.load(environ={}, config_file=tmp_path / "none.toml").with_free_ports(tmp_path / "data")
    data = LiveData(settings)
    monkeypatch.setattr(LiveData, "_instance", data)
    yield data
    data.stop()


def _snapshot(domain: str, events: int, drifts: list[float]) -> DomainLive:
    d = DOMAINS[domain]
    xs = list(range(100, events + 1, 100))
    return DomainLive(
        domain,
        model=d.default_model,
        version="1",
        events_learned=events,
        paused=False,
        available=True,
        metrics={m: 0.5 for m in d.main_metrics},
        history={m: [(float(x), 0.4 + i * 0.01 + x / 1e4) for x in xs] for i, m in enumerate(d.main_metrics)},
        drifts_at=list(drifts),
        updated=time.time(),
    )


def _markers(fig: Any) -> list[float]:
    spans = [a for a in [*fig.center, *fig.above, *fig.below, *fig.left, *fig.right] if isinstance(a, Span)]
    assert all(s.dimension == "height" for s in spans), "drift markers are vertical lines at an events-learned x"
    return sorted(float(s.location) for s in spans if s.visible)  # type: ignore[arg-type]


def _figures(obj: Any) -> list[Any]:
    """Every Bokeh figure inside a Panel layout (the figures the tab shows)."""
    found = []
    for pane in obj.select(lambda o: hasattr(o, "object")):
        if type(pane.object).__name__ == "figure":
            found.append(pane.object)
    return found


@pytest.mark.parametrize("domain", list(PAGES))
def test_metric_charts_mark_every_drift_from_the_live_data(domain: str, live: LiveData) -> None:
    d = DOMAINS[domain]
    live.domains[domain] = _snapshot(domain, 900, [250.0, 610.0])
    page = PAGES[domain](live.settings)
    page.refresh()  # the page's first periodic refresh, before anyone opened the charts tab
    assert not page._refresh_failed

    tab = page._build_metrics_tab()  # what opening the "Metric charts" tab runs
    assert set(page.charts) == set(d.main_metrics)
    shown = _figures(tab)
    assert {id(f) for f in shown} == {id(c.figure) for c in page.charts.values()}, "every metric chart is on the tab"
    for name, chart in page.charts.items():
        assert list(chart.source.data["x"]) == [p[0] for p in live.domains[domain].history[name]]
        assert _markers(chart.figure) == [250.0, 610.0], name

    # The model learns on and detects another drift: the next refresh adds exactly that marker.
    live.domains[domain] = _snapshot(domain, 1300, [250.0, 610.0, 1180.0])
    page.refresh()
    assert not page._refresh_failed
    for name, chart in page.charts.items():
        assert _markers(chart.figure) == [250.0, 610.0, 1180.0], name
        assert max(chart.source.data["x"]) == 1300.0

    # Later snapshots repeating the same drifts do not draw them twice.
    live.domains[domain] = _snapshot(domain, 1400, [250.0, 610.0, 1180.0])
    page.refresh()
    for name, chart in page.charts.items():
        assert _markers(chart.figure) == [250.0, 610.0, 1180.0], name

    # The model starts again (restored from an older version, or Redis emptied): old markers go, new ones show.
    live.domains[domain] = _snapshot(domain, 500, [180.0])
    page.refresh()
    for name, chart in page.charts.items():
        assert _markers(chart.figure) == [180.0], name
    live.domains[domain] = _snapshot(domain, 900, [180.0, 610.0])  # a drift at a position shown before comes back
    page.refresh()
    for name, chart in page.charts.items():
        assert _markers(chart.figure) == [180.0, 610.0], name
