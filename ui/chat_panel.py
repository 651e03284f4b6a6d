"""The assistant's chat panel: placed in every page's sidebar by ui.layout.page_template.

It asks the chat function (POST /chat, an NDJSON stream) and streams the answer into the conversation as it
arrives, with the tools the assistant used under each answer. One chat session per browser: its id lives in
a cookie (`coelho_chat_session`), so the conversation, kept by the chat function in Redis, is shown again
when the user moves to another page. Each question carries the page's context (`context()`: the form's
values, the last prediction), read at the moment the question is asked. Every request carries the bearer token
when COELHO_API_TOKEN is set (`auth_headers()`): the chat function asks for it then.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import nh3
import panel as pn
import param
import requests
from panel.custom import JSComponent

from coelho.settings import Settings
from functions.middleware.auth import auth_headers

log = logging.getLogger("coelho.ui.chat")

COOKIE = "coelho_chat_session"
ASSISTANT = "Assistant"
USER = "You"
TOOL_LABELS = {
    "get_page_state": "page state",
    "get_model_info": "model info",
    "get_cluster_analytics": "cluster analytics",
    "get_recent_predictions": "recent predictions",
    "explain_prediction": "explain prediction",
    "get_platform_health": "platform health",
    "describe_domain": "domain declaration",
    "query_lake": "lake SQL",
}
# Short enough to show whole in the sidebar's input (two lines at its width): a clipped hint helps nobody.
EXAMPLES = {
    "home": "What does this page show?",
    "tfd": "Why was this flagged?",
    "eta": "What drove this ETA?",
    "ecci": "What is a cluster?",
    "observability": "What does this show?",
    "sql": "Which category has most fraud?",
}
PANEL_CSS = """
:host { font-size: 13px; }
.tools { color: #475569; font-size: 12px; margin-top: 4px; }
.tools code { background: #eef2ff; color: #3730a3; padding: 1px 6px; border-radius: 6px; }
"""


COOKIE_MAX_AGE_S = 86400
CLAIM_PATH = "/api/chat-session"
_claims: dict[str, tuple[str, float]] = {}  # one-time token -> (session id, when), for CookieClaimHandler
_claims_lock = threading.Lock()
CLAIM_TTL_S = 300.0


def new_claim(session_id: str) -> str:
    """A one-time token the browser exchanges for the session cookie (GET /api/chat-session?claim=TOKEN)."""
    token = uuid.uuid4().hex
    now = time.time()
    with _claims_lock:
        for old in [t for t, (_, at) in _claims.items() if now - at > CLAIM_TTL_S]:
            del _claims[old]
        _claims[token] = (session_id, now)
    return token


def redeem_claim(token: str) -> str | None:
    """The session id of a token not used yet (and young enough); None otherwise."""
    with _claims_lock:
        found = _claims.pop(token, None)
    if found is None or time.time() - found[1] > CLAIM_TTL_S:
        return None
    return found[0]


def cookie_claim_handler() -> type:
    """GET /api/chat-session?claim=TOKEN: sets the chat session cookie, HttpOnly, from the server.

    The session id never goes through the page's JavaScript: a script injected into the page (what sanitising the
    answers guards against) can neither read the cookie nor learn the id from this answer, which is empty."""
    from tornado.web import RequestHandler

    class CookieClaimHandler(RequestHandler):  # type: ignore[misc]
        def get(self) -> None:
            session_id = redeem_claim(self.get_argument("claim", ""))
            if session_id is None:
                self.set_status(404)
                self.finish()
                return
            self.set_cookie(COOKIE, session_id, path="/", max_age=COOKIE_MAX_AGE_S, httponly=True, samesite="Lax")
            self.set_status(204)
            self.finish()

    return CookieClaimHandler


class SessionCookie(JSComponent):  # type: ignore[misc]
    """Has the server set the chat session cookie (HttpOnly) when the browser had none: exchanges `claim`, a
    one-time token, at CLAIM_PATH. The page's scripts never see the session id."""

    claim = param.String(default="")

    _esm = """
    export function render({ model }) {
      if (model.claim) {
        fetch("/api/chat-session?claim=" + encodeURIComponent(model.claim), { credentials: "same-origin" });
      }
      const el = document.createElement("span");
      el.style.display = "none";
      return el;
    }
    """


def browser_session_id() -> tuple[str, bool]:
    """The chat session of this browser (the cookie the page request carried) and whether it is new (no cookie
    yet: SessionCookie has the server set one)."""
    cookies = getattr(pn.state, "cookies", None) or {}
    value = str(cookies.get(COOKIE, ""))
    if 8 <= len(value) <= 64 and all(c.isalnum() or c in "-_" for c in value):
        return value, False
    return "web-" + uuid.uuid4().hex, True


# Chat answers are Markdown from a language model, which may repeat what a user, a page or a tool result holds:
# the HTML it renders to is sanitised (an allow-list of tags and attributes, no script, no event handler).
ALLOWED_ATTRIBUTES = {**{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()}, "*": {"class"}}


def sanitize_html(text: str) -> str:
    """Only harmless HTML: formatting tags and links stay, scripts and event handlers go.

    >>> sanitize_html("<img src=x onerror=alert(1)><b>bold</b><script>alert(2)</script>")
    '<img src="x"><b>bold</b>'
    """
    return str(nh3.clean(text, attributes=ALLOWED_ATTRIBUTES))


class SafeMarkdown(pn.pane.Markdown):  # type: ignore[misc]
    """A Markdown pane whose rendered HTML is sanitised before it reaches the browser."""

    def _transform_object(self, obj: Any) -> dict[str, Any]:
        rendered = super()._transform_object(obj)
        text = html.unescape(str(rendered.get("object", "")))
        return dict(rendered, object=html.escape(sanitize_html(text)))


def render_message(value: Any) -> Any:
    """How the chat shows a message: text through SafeMarkdown, anything else as Panel would."""
    if isinstance(value, str):
        return SafeMarkdown(value, sizing_mode="stretch_width")
    return pn.panel(value)


def tools_footer(tools: list[str]) -> str:
    if not tools:
        return ""
    names = ", ".join(f"<code>{html.escape(TOOL_LABELS.get(t, t))}</code>" for t in dict.fromkeys(tools))
    return f"\n\n<div class='tools'>Tools used: {names}</div>"


class ChatClient:
    """Talks to the chat function; `stream` turns its NDJSON answer into an async iterator of events."""

    def __init__(self, base_url: str, timeout: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def history(self, session_id: str) -> list[dict[str, Any]]:
        try:
            response = requests.get(
                f"{self.base_url}/chat/history",
                params={"session_id": session_id},
                headers=auth_headers(),
                timeout=1.5,
            )
            if response.status_code == 200:
                return list(response.json().get("messages", []))
        except (requests.RequestException, ValueError):
            pass
        return []

    def _read(self, body: dict[str, Any], put: Callable[[dict[str, Any] | None], None]) -> None:
        try:
            with requests.post(
                f"{self.base_url}/chat", json=body, headers=auth_headers(), stream=True, timeout=(3, self.timeout)
            ) as response:
                if response.status_code != 200:
                    try:
                        put(dict(response.json(), type="error"))
                    except ValueError:
                        put(
                            {
                                "type": "error",
                                "error": f"The chat function answered {response.status_code}.",
                                "retryable": True,
                            }
                        )
                    return
                for line in response.iter_lines(decode_unicode=True):
                    if line:
                        put(json.loads(line))
        except requests.ConnectionError:
            put(
                {
                    "type": "error",
                    "error": "The chat function is not running (`coelho up` starts it).",
                    "retryable": True,
                }
            )
        except requests.RequestException as exc:
            put(
                {
                    "type": "error",
                    "error": f"The chat function did not answer ({type(exc).__name__}).",
                    "retryable": True,
                }
            )
        except ValueError:
            put({"type": "error", "error": "The chat function sent a malformed answer.", "retryable": True})
        finally:
            put(None)

    async def stream(self, session_id: str, message: str, page: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        body = {"session_id": session_id, "message": message, "page": page}
        thread = threading.Thread(
            target=self._read, args=(body, lambda e: loop.call_soon_threadsafe(queue.put_nowait, e)), daemon=True
        )
        thread.start()
        while True:
            event = await queue.get()
            if event is None:
                return
            yield event


def _safe_context(context: Callable[[], dict[str, Any]], page: str) -> dict[str, Any]:
    try:
        data = dict(context() or {})
    except Exception:  # a page bug must not break the assistant
        log.exception("page context failed")
        data = {}
    data.setdefault("page", page)
    text = json.dumps(data, default=str)
    if len(text) > 7_500:  # the chat function refuses more than 8,000 characters: drop the bulky parts
        data = {k: v for k, v in data.items() if k in ("page", "form", "last_prediction")}
    return json.loads(json.dumps(data, default=str))


def chat_panel(
    settings: Settings, page: str = "home", context: Callable[[], dict[str, Any]] = dict
) -> pn.viewable.Viewable:
    """The chat panel for one page view: the conversation so far, then a box to ask the next question."""
    client = ChatClient(settings.url("chat"))
    session_id, new = browser_session_id()
    session = {"id": session_id}
    cookie = SessionCookie(claim=new_claim(session_id) if new else "", height=0, width=0, margin=0)

    async def respond(contents: Any, user: str, instance: pn.chat.ChatInterface) -> AsyncIterator[str]:
        question = str(contents)
        answer = ""
        tools: list[str] = []
        status = ""
        async for event in client.stream(session["id"], question, _safe_context(context, page)):
            kind = event.get("type")
            if kind == "text":
                answer += event["text"]
                status = ""
            elif kind == "tool":
                tools.append(str(event.get("name")))
                status = f"\n\n_Looking up {TOOL_LABELS.get(tools[-1], tools[-1])}…_"
            elif kind == "error":
                suffix = " You can try again." if event.get("retryable") else ""
                answer = (
                    answer + "\n\n" if answer else ""
                ) + f"⚠️ {event.get('error', 'The assistant failed.')}{suffix}"
                status = ""
            elif kind == "done":
                answer = event.get("answer", answer)
                status = ""
            yield answer + status + tools_footer(tools)

    interface = pn.chat.ChatInterface(
        callback=respond,
        callback_user=ASSISTANT,
        user=USER,
        show_rerun=False,
        show_undo=False,
        show_clear=False,
        show_button_name=True,  # the icons come from a CDN, unreachable offline: label the buttons
        placeholder_text="Thinking…",
        height=620,
        sizing_mode="stretch_width",
        # Letters, not emoji: these machines have no emoji font.
        message_params={
            "show_reaction_icons": False,
            "show_copy_icon": False,
            "show_timestamp": False,
            "default_avatars": {ASSISTANT.lower(): "A", USER.lower(): "Y"},
        },
        renderers=[render_message],  # every message's text through SafeMarkdown: sanitised HTML
        widgets=[
            pn.chat.ChatAreaInput(
                placeholder=f"Ask about this page, e.g. “{EXAMPLES.get(page, EXAMPLES['home'])}”",
                rows=2,
                auto_grow=True,
                max_rows=8,
                # The design fixes a textarea at one line's height: room for the two-line hint (auto_grow adds more).
                stylesheets=["textarea.bk-input { min-height: 3.6em; }"],
            )
        ],
        stylesheets=[PANEL_CSS],
    )

    def restore() -> None:
        messages = client.history(session["id"])
        interface.clear()
        for message in messages:
            is_user = message.get("role") == "user"
            content = str(message.get("content", ""))
            if not is_user:
                content += tools_footer([t for t in message.get("tools", []) if t in TOOL_LABELS])
            interface.send(content, user=USER if is_user else ASSISTANT, respond=False)

    restore()
    header = pn.pane.HTML(
        "<div style='font-weight:600;font-size:15px'>Assistant</div>"
        "<div style='color:#64748b;font-size:12px'>Answers from the platform's live data, with read-only tools.</div>",
        margin=(4, 10),
    )
    return pn.Column(
        header, interface, cookie, sizing_mode="stretch_width", name="chat-panel", css_classes=["chat-panel"]
    )
