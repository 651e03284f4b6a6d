"""The assistant's answers reach the page sanitised (no script, no event handler), and the chat session cookie is
set by the server, HttpOnly, through a one-time claim."""

from __future__ import annotations

import pytest

from ui.chat_panel import SafeMarkdown, new_claim, redeem_claim, render_message

ATTACK = "Here you go <img src=x onerror=\"fetch('/steal?'+document.cookie)\"> **done** <script>alert(1)</script>"


def test_an_answer_with_an_event_handler_is_rendered_without_it() -> None:
    pane = render_message(ATTACK)
    assert isinstance(pane, SafeMarkdown)
    sent = str(pane._transform_object(ATTACK)["object"])  # what goes to the browser (HTML-escaped text)
    assert "onerror" not in sent and "script" not in sent and "alert" not in sent
    assert "&lt;strong&gt;done&lt;/strong&gt;" in sent  # Markdown still renders
    assert "&lt;img src=&quot;x&quot;&gt;" in sent


def test_code_in_an_answer_keeps_its_characters() -> None:
    sent = str(render_message("Use `a < b && c`")._transform_object("Use `a < b && c`")["object"])
    assert "&amp;lt;" in sent and "&amp;amp;&amp;amp;" in sent  # &lt; and &amp; once: shown as < and &


def test_a_claim_gives_its_session_once() -> None:
    token = new_claim("web-abc123")
    assert redeem_claim(token) == "web-abc123"
    assert redeem_claim(token) is None  # used
    assert redeem_claim("made-up") is None


@pytest.mark.parametrize("value", [None, 3])
def test_other_objects_render_as_panel_would(value: object) -> None:
    assert not isinstance(render_message(value), SafeMarkdown)
