"""The chat function: the dashboard's assistant, Claude with read-only tools over the platform's live data.

    POST /chat          {"session_id", "message", "page": {page context}} -> a stream of NDJSON events
                        (or server-sent events with Accept: text/event-stream):
                          {"type": "start", ...}, {"type": "text", "text": "..."} deltas,
                          {"type": "tool", "name", "input"}, {"type": "tool_result", "name", "ok", "chars"},
                          {"type": "done", "answer", "tools"} or {"type": "error", "status", "error", "retryable"}
    GET  /chat/history?session_id=...  -> {"messages": [...]} (what the panel shows after a page change)
    POST /              a CloudEvent com.coelho.realtime.chat.requested (same data) -> a
                        com.coelho.realtime.chat.answer CloudEvent with the whole answer (no streaming)
    GET  /health/liveness, /health/readiness (Redis), /metrics

Configuration from the environment: ANTHROPIC_API_KEY (a Secret in the cluster), ANTHROPIC_MODEL (default
claude-sonnet-4-5), ANTHROPIC_BASE_URL (tests point it at a stand-in; unset = the real API), REDIS_URL, and
the CHAT_* limits of `ChatConfig`. Without a key, or when the API is rate limited, overloaded or unreachable,
the answer is a clear message with HTTP 503 (Retry-After when retrying helps); nothing else in the platform
depends on this function.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import redis
from flask import Flask, Response, request, stream_with_context

from coelho.settings import Settings
from eventing.cloudevent_types import CHAT_ANSWER, CHAT_REQUESTED
from functions.assistant.conversation import (
    CHAT_REQUESTS,
    Assistant,
    ChatConfig,
    ChatRefused,
)
from functions.assistant.data import PlatformReader
from functions.assistant.limits import ChatLimits
from functions.assistant.memory import EVENT_KEY_PREFIX, ConversationMemory, valid_session_id
from functions.assistant.redaction import RedactingFilter, SecretRedactor
from functions.assistant.tools import TOOLS
from functions.middleware.app import (
    DependencyUnavailable,
    Event,
    UnsupportedEvent,
    create_app,
    event_data,
    reply,
    serve,
)
from functions.middleware.limits import loads_json, max_body_bytes

log = logging.getLogger("coelho.functions.chat")

SOURCE = "/coelho/functions/chat"


def _format(event: Mapping[str, Any], sse: bool) -> str:
    data = json.dumps(event, default=str)
    return f"event: {event['type']}\ndata: {data}\n\n" if sse else data + "\n"


def create_chat_app(config: ChatConfig | None = None, settings: Settings | None = None) -> Flask:
    config = config or ChatConfig.from_environ()
    settings = settings or Settings.load()
    redactor = SecretRedactor.from_environ()
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter(redactor))
    log.addFilter(RedactingFilter(redactor))
    redis_url = os.environ.get("REDIS_URL", settings.redis_url)
    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5, socket_connect_timeout=2)
    memory = ConversationMemory(
        client,
        ttl_seconds=config.session_ttl_seconds,
        max_messages=config.max_history_messages,
        max_chars=config.max_history_chars,
    )
    limits = ChatLimits(client, config.rate_per_minute, config.daily_tokens)
    assistant = Assistant(config, memory, PlatformReader(settings, redis_url), redactor, limits=limits)
    # questions that arrive as CloudEvents keep their conversations apart from the dashboard's (memory.py)
    event_assistant = replace(assistant, memory=replace(memory, prefix=EVENT_KEY_PREFIX))

    def handle_event(event: Event) -> Event | None:
        data = event_data(event)
        if not isinstance(data, dict):
            raise UnsupportedEvent("chat.requested data must be a JSON object: {session_id, message, page}")
        session_id = str(data.get("session_id") or uuid.uuid4().hex)
        try:
            checked = event_assistant.check(session_id, data.get("message"), data.get("page"))
            events = list(event_assistant.answer(*checked))
        except ChatRefused as exc:
            if exc.status in (429, 503):  # retried by the Broker's delivery
                raise DependencyUnavailable(exc.message) from None
            raise UnsupportedEvent(exc.message) from None
        done = next((e for e in events if e["type"] == "done"), None)
        error = next((e for e in events if e["type"] == "error"), None)
        if done is None and error is not None:
            raise DependencyUnavailable(error["error"])
        body = {
            "session_id": session_id,
            "answer": done["answer"] if done else "",
            "tools": done["tools"] if done else [],
        }
        return reply(event, CHAT_ANSWER, SOURCE, body)

    def ready() -> None:
        try:
            client.ping()
        except redis.RedisError as exc:
            raise DependencyUnavailable(f"redis: {exc}") from None

    # the largest body a question within the limits can take, JSON-escaped (the middleware answers 413 past it)
    max_body = max_body_bytes(default=4 * (config.max_message_chars + config.max_page_chars))
    app = create_app("chat", handle_event, accepts=[CHAT_REQUESTED], ready=ready, max_body=max_body)

    @app.post("/chat")
    def chat() -> Response:
        sse = "text/event-stream" in request.headers.get("accept", "")
        try:
            body = loads_json(request.get_data(cache=False)) if request.is_json else None
        except ValueError as exc:
            return _refusal(ChatRefused(400, f"send a JSON object: {{session_id, message, page}} ({exc})"))
        if not isinstance(body, dict):
            return _refusal(ChatRefused(400, "send a JSON object: {session_id, message, page}"))
        try:
            checked = assistant.check(body.get("session_id"), body.get("message"), body.get("page"))
            events = assistant.answer(*checked)
            first = next(events)
        except ChatRefused as exc:
            if exc.status in (400, 413):
                CHAT_REQUESTS.labels("rejected").inc()
            elif exc.status == 503 and not exc.retryable:
                CHAT_REQUESTS.labels("not_configured").inc()
            return _refusal(exc)

        def stream() -> Iterator[str]:
            yield _format(first, sse)
            for event in events:
                yield _format(event, sse)

        mimetype = "text/event-stream" if sse else "application/x-ndjson"
        return Response(
            stream_with_context(stream()),
            mimetype=mimetype,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get("/chat/history")
    def history() -> Response:
        session_id = request.args.get("session_id", "")
        if not valid_session_id(session_id):
            return _refusal(ChatRefused(400, "session_id must be 8-64 characters of letters, digits, '-' or '_'."))
        try:
            entries = memory.history(session_id)
        except redis.RedisError:
            return _refusal(ChatRefused(503, "The assistant's memory (Redis) is unavailable.", True, 5))
        messages = [{k: e.get(k) for k in ("role", "content", "tools") if k in e} for e in entries]
        return Response(json.dumps({"session_id": session_id, "messages": messages}), mimetype="application/json")

    @app.get("/chat/config")
    def chat_config() -> Response:
        """What the panel shows in its header: the model and whether a key is set (never the key)."""
        return Response(
            json.dumps({"model": config.model, "configured": bool(config.api_key), "tools": list(TOOLS)}),
            mimetype="application/json",
        )

    return app


def _refusal(exc: ChatRefused) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retryable and exc.retry_after else {}
    return Response(json.dumps(exc.to_json()), status=exc.status, mimetype="application/json", headers=headers)


def main() -> None:
    serve(create_chat_app)


if __name__ == "__main__":
    main()
