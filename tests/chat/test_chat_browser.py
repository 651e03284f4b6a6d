"""The chat panel in a real browser: ask on the fraud page, see the streamed answer and its tools, change page
and find the conversation still there. Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from coelho.runtime import Platform
from tests.chat.anthropic_standin import AnthropicStandIn, text, tool_use
from tests.chat.chat_testkit import PROJECT, tool_result_json

pytestmark = [pytest.mark.stack, pytest.mark.browser]

SHOTS = PROJECT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Any:
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian's chromium is not installed")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.mark.timeout(1500)  # the session's platform starts inside this test when it runs alone
def test_chat_panel_streams_an_answer_and_keeps_it_across_pages(
    chat_url: str, standin: AnthropicStandIn, live_platform: Platform, browser: Any
) -> None:
    live_platform.start(["dashboard"])
    dashboard = live_platform.settings.url("dashboard")
    SHOTS.mkdir(parents=True, exist_ok=True)

    def answer(body: dict[str, Any]) -> Any:
        info = tool_result_json(body)
        return [
            text(
                f"This page shows the fraud model learning live: **{info['model']}** has learned "
                f"{info['events_learned']} transactions so far, and its ROC AUC is {info['main_metrics']['ROCAUC']}. "
                "The form asks it for a prediction; the gauge shows the fraud probability."
            )
        ]

    standin.script([text("Let me check the live model."), tool_use("get_model_info", {"domain": "tfd"})], answer)
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.goto(f"{dashboard}/tfd", wait_until="domcontentloaded", timeout=120_000)
    box = page.get_by_placeholder(re.compile("Ask about this page"))
    box.wait_for(timeout=60_000)
    box.fill("What does this page show?")
    box.press("Enter")
    page.get_by_text(re.compile(r"has learned \d+ transactions so far")).wait_for(timeout=60_000)
    page.get_by_text("Tools used").first.wait_for(timeout=10_000)
    assert page.get_by_text("model info").count() >= 1
    page.screenshot(path=str(SHOTS / "chat-tfd.png"), full_page=True)

    # The dashboard sent the page's live form with the question.
    first = standin.requests[0]
    assert '<page_context page="tfd">' in first.system_text and '"form"' in first.system_text
    assert "amount" in first.system_text
    info = tool_result_json(standin.requests[1].body)
    assert page.get_by_text(f"has learned {info['events_learned']} transactions so far").count() == 1

    # Another page, same browser: the conversation is still there (cookie session, memory in Redis).
    page.goto(f"{dashboard}/eta", wait_until="domcontentloaded", timeout=120_000)
    page.get_by_placeholder(re.compile("Ask about this page")).wait_for(timeout=60_000)
    page.get_by_text("What does this page show?").first.wait_for(timeout=30_000)
    page.get_by_text(re.compile(r"has learned \d+ transactions so far")).wait_for(timeout=10_000)
    standin.script([text("On this page the ETA model predicts trip durations.")])
    box = page.get_by_placeholder(re.compile("Ask about this page"))
    box.fill("And this page?")
    box.press("Enter")
    page.get_by_text("On this page the ETA model predicts trip durations.").wait_for(timeout=60_000)
    page.screenshot(path=str(SHOTS / "chat-eta-memory.png"), full_page=True)
    last = standin.requests[-1]
    assert [m["role"] for m in last.messages] == ["user", "assistant", "user"]
    assert '<page_context page="eta">' in last.system_text
    page.close()
