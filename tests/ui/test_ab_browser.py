"""A/B testing on the fraud page in a real browser against the real platform: a challenger learns beside the
champion and both are checkpointed; the Predict tab's selector offers the registered version and predict-one answers
with it frozen; the Compare tab asks A and B the same event side by side, counts a preference by page and version,
draws both curves, sets and ends the split, and promotes and rolls back only once confirmed.

Screenshots: test-artifacts/screenshots/ab-*.png.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from eventing.cloudevent_types import CHECKPOINT_REQUESTED
from eventing.domains import TFD
from functions.model_state import ab
from functions.model_state.keys import key, model_key
from tests.ui.conftest import post_event
from tests.ui.test_dashboard import INTERACTIVE, no_traceback, open_page, screenshot, wait_events_learned
from tests.ui.test_dashboard_details import LEGEND_LABELS
from tests.waiting import until

pytestmark = [pytest.mark.browser, pytest.mark.stack]

CHAMPION, CHALLENGER = TFD.default_model, "logreg"
KEPT = ("aliases", "champions", "split", "preferences")  # what the test changes, put back afterwards


@pytest.fixture(scope="module")
def challenger(dashboard: Any) -> Iterator[tuple[redis.Redis, int]]:
    """logreg live beside the champion, caught up and checkpointed: (Redis, the challenger's registered version).
    Afterwards tfd has its one live model, aliases, split and preferences back."""
    client = redis.Redis.from_url(dashboard.settings.redis_url)
    saved = {name: client.dump(key("tfd", name)) for name in KEPT}
    ab.add_model(client, TFD, CHALLENGER)
    until(
        lambda: json.loads(client.hget(model_key("tfd", CHALLENGER, "summary"), "json") or "{}").get("events_learned"),
        60,
        "the challenger learned in learn-one",
    )
    resp = post_event(
        dashboard.settings.url("checkpoint") + "/", CHECKPOINT_REQUESTED, "/coelho/tests", {"domains": ["tfd"]}
    )
    assert resp.status_code < 300, resp.text
    checkpoint = until(lambda: client.get(model_key("tfd", CHALLENGER, "checkpoint")), 60, "the challenger's version")
    try:
        yield client, int(json.loads(checkpoint)["version"])
    finally:
        for name, value in saved.items():
            client.delete(key("tfd", name))
            if value is not None:
                client.restore(key("tfd", name), 0, value, replace=True)
        ab.remove_model(client, TFD, CHALLENGER)


def select(page: Any, css: str) -> Any:
    return page.locator(f".{css} select").first


def wait_option(page: Any, css: str, label: str) -> None:
    """The selector offers `label` (the catalogue is read in the background every 10 s)."""
    until(lambda: label in select(page, css).locator("option").all_inner_texts(), 60, f"{label!r} in .{css}")


def champion(client: redis.Redis) -> str:
    return str(ab.champion(client, TFD)["model"])


def test_ab_testing_from_the_fraud_page(challenger: tuple[redis.Redis, int], dashboard: Any, page: Any) -> None:
    client, version = challenger
    frozen = f"v{version} · {CHALLENGER} · frozen"
    open_page(page, dashboard, "/tfd", "Randomize All Fields")
    wait_events_learned(page)

    # (a) the Predict tab's selector: live models, aliases, registered versions; a version answers frozen
    wait_option(page, "model-select", frozen)
    options = select(page, "model-select").locator("option").all_inner_texts()
    assert f"{CHAMPION} · live" in options and f"{CHALLENGER} · live" in options
    assert any(o.startswith("champion → ") for o in options) and any(o.startswith("challenger → ") for o in options)
    select(page, "model-select").select_option(label=frozen)
    page.get_by_role("button", name="Predict", exact=True).click()
    page.get_by_text(f"model {CHALLENGER} v{version} (frozen)").first.wait_for()
    screenshot(page, "ab-selector")

    # (b) A and B chosen by the person answer the form's event side by side
    page.get_by_text("Compare", exact=True).first.click()
    page.get_by_role("button", name="Ask A and B").wait_for()
    wait_option(page, "ab-arm-b", frozen)
    select(page, "ab-arm-a").select_option(label=f"{CHAMPION} · live")
    select(page, "ab-arm-b").select_option(label=frozen)
    page.wait_for_function(INTERACTIVE)
    page.get_by_role("button", name="Ask A and B").click()
    page.locator(".ab-answer-b").get_by_text(f"{CHALLENGER}@v{version}").wait_for()
    page.locator(".ab-answer-a").get_by_text(f"{CHAMPION}@live").wait_for()

    # (f) a preference names the page and the versions compared; counts per version are shown
    page.get_by_role("button", name="Prefer B").click()
    page.get_by_text("Recorded on tfd").first.wait_for()
    field = f"tfd|{CHAMPION}@live|{CHALLENGER}@v{version}|b"
    assert int(client.hget(key("tfd", "preferences"), field) or 0) >= 1
    page.locator(".ab-preference-counts").get_by_text(f"{CHALLENGER}@v{version}").wait_for()

    # (c) both curves over the same event axis, with the verdict
    labels = page.evaluate(LEGEND_LABELS)
    assert f"{CHAMPION}@live" in labels and f"{CHALLENGER}@v{version}" in labels, labels
    page.get_by_text("Interval and verdict").first.wait_for()
    screenshot(page, "ab-compare", full_height=2600)

    # (e) the split, set from the page as `coelho models split tfd champion=90 challenger=10` sets it
    page.get_by_role("button", name="Set split").click()
    page.get_by_text("Split set: champion 90%, challenger 10%").first.wait_for()
    assert json.loads(client.get(key("tfd", "split")) or "{}")["arms"] == [["champion", 90], ["challenger", 10]]
    page.get_by_role("button", name="End split").click()
    page.get_by_text("No split: the champion answers every request.").first.wait_for()
    assert client.get(key("tfd", "split")) is None

    # (d) Promote asks first: Cancel changes nothing, Confirm promotes; Roll back asks too
    wait_option(page, "promote-select", f"{CHALLENGER} (newest version)")
    select(page, "promote-select").select_option(label=f"{CHALLENGER} (newest version)")
    page.wait_for_function(INTERACTIVE)
    page.get_by_role("button", name="Promote", exact=True).click()
    page.get_by_text(f"Promote {CHALLENGER} (newest version) to champion?").first.wait_for()
    screenshot(page, "ab-promote-confirm", full_height=2600)
    page.get_by_role("button", name="Cancel").click()
    page.get_by_text("Nothing changed.").first.wait_for()
    assert champion(client) == CHAMPION
    page.get_by_role("button", name="Promote", exact=True).click()
    page.get_by_role("button", name="Confirm").click()
    page.get_by_text(f"Champion is now {CHALLENGER}").first.wait_for()
    assert champion(client) == CHALLENGER
    page.get_by_role("button", name="Roll back").click()
    page.get_by_text(f"Roll back the champion from {CHALLENGER}").first.wait_for()
    assert champion(client) == CHALLENGER
    page.get_by_role("button", name="Confirm").click()
    page.get_by_text(f"Champion is now {CHAMPION}").first.wait_for()
    assert champion(client) == CHAMPION
    time.sleep(0.5)  # the last message drawn before the screenshot
    screenshot(page, "ab-rolled-back", full_height=2600)
    no_traceback(page)
    assert not page.errors
