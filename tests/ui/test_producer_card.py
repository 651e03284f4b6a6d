"""The producer card says whether a producer really runs (its heartbeats in Redis), the rate it is set to, and the
rate events actually arrive at the domain's log, instead of the switch's "running (default)"."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from coelho.settings import Settings
from ui.live import DomainLive, LiveData


@pytest.fixture
def live() -> Iterator[LiveData]:
    """The dashboard's shared poller, not started: the test writes its snapshots."""
    data = LiveData(Settings())
    previous, LiveData._instance = LiveData._instance, data
    try:
        yield data
    finally:
        LiveData._instance = previous


def fraud_page(live: LiveData) -> Any:
    from ui.pages.tfd import FraudPage

    return FraudPage(live.settings)


def show(page: Any, live: LiveData, snapshot: DomainLive, now: float) -> str:
    snapshot.updated = now
    live._add_rate(snapshot, now)
    live.domains["tfd"] = snapshot
    page.refresh()
    return f"{page.producer_state.object} {page.producer_detail.object}"


def test_no_producer_is_not_running_by_default(live: LiveData) -> None:
    page = fraud_page(live)
    text = show(page, live, DomainLive("tfd", producer_enabled=None, producer_rate=None), now=1000.0)
    assert "running (default)" not in text
    assert "NO PRODUCER" in text and "coelho produce tfd" in text
    assert "Arriving: <b class='arriving-rate'>0.0 events/s" in text


def test_a_running_producer_shows_its_rate_and_what_arrives(live: LiveData) -> None:
    page = fraud_page(live)
    beat = {"id": "host:42", "rate": 5.0, "enabled": True, "sent": 120, "count": None, "t": 0.0}
    for i, head in enumerate((100, 105, 110, 115)):  # the log grows by 5 events a second
        text = show(page, live, DomainLive("tfd", producers=[beat], log_head=head), now=1000.0 + i)
    assert "STREAMING" in text and "set to 5 events/s" in text and "120 sent" in text
    assert "5.0 events/s" in text.split("Arriving:")[1]


def test_events_from_coelho_produce_show_as_a_bounded_run(live: LiveData) -> None:
    page = fraud_page(live)
    beat = {"id": "host:7", "rate": 0.0, "enabled": True, "sent": 300, "count": 500, "t": 0.0}
    text = show(page, live, DomainLive("tfd", producers=[beat], log_head=10), now=1000.0)
    assert "as fast as it can" in text and "300 of 500 sent" in text


def test_a_producer_paused_by_the_switch_is_stopped(live: LiveData) -> None:
    page = fraud_page(live)
    beat = {"id": "host:42", "rate": 5.0, "enabled": False, "sent": 120, "count": None, "t": 0.0}
    text = show(page, live, DomainLive("tfd", producer_enabled=False, producers=[beat]), now=1000.0)
    assert "STOPPED" in text and "STREAMING" not in text
