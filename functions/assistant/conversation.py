"""The assistant's conversation: its configuration and limits, the Messages API tool loop that streams an answer,
and how a failing API becomes a clear refusal. The chat function (functions/chat.py) serves it over HTTP and as
CloudEvents.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import anthropic
import redis
from prometheus_client import Counter, Histogram

from functions.assistant.data import PlatformReader
from functions.assistant.limits import ChatLimits, OverLimit
from functions.assistant.memory import ConversationMemory, valid_session_id
from functions.assistant.prompt import system_blocks
from functions.assistant.redaction import PersonalDataMinimizer, SecretRedactor, StreamRedactor
from functions.assistant.tools import TOOLS, ToolBox
from functions.middleware.limits import MAX_JSON_DEPTH, nesting_depth

log = logging.getLogger("coelho.functions.chat")  # the chat function's logger: its redaction filter applies

DEFAULT_MODEL = "claude-sonnet-4-5"

CHAT_REQUESTS = Counter("coelho_chat_requests_total", "Chat questions by outcome", ["outcome"])
TOOL_CALLS = Counter("coelho_chat_tool_calls_total", "Tool calls made by the assistant", ["tool", "outcome"])
API_ERRORS = Counter("coelho_chat_api_errors_total", "Failed calls to the Messages API by kind", ["kind"])
ANSWER_SECONDS = Histogram(
    "coelho_chat_answer_seconds",
    "Time from question to the end of the answer",
    buckets=(0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120),
)


@dataclass(frozen=True)
class ChatConfig:
    api_key: str | None = None
    base_url: str | None = None
    model: str = DEFAULT_MODEL
    max_tokens: int = 1024
    max_tool_rounds: int = 5  # model calls that may use tools before the answer must be text
    max_message_chars: int = 4_000
    max_page_chars: int = 8_000
    max_history_messages: int = 20
    max_history_chars: int = 24_000
    session_ttl_seconds: int = 24 * 3600
    api_timeout_seconds: float = 60.0
    api_max_retries: int = 2
    rate_per_minute: int = 20  # questions per session and minute (0: no limit)
    daily_tokens: int = 2_000_000  # Messages API tokens per UTC day, all sessions (0: no budget)

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> ChatConfig:
        env = os.environ if env is None else env

        def number(name: str, default: float) -> float:
            return float(env.get(name, default))

        return cls(
            api_key=env.get("ANTHROPIC_API_KEY") or None,
            base_url=env.get("ANTHROPIC_BASE_URL") or None,
            model=env.get("ANTHROPIC_MODEL") or DEFAULT_MODEL,
            max_tokens=int(number("CHAT_MAX_TOKENS", cls.max_tokens)),
            max_tool_rounds=int(number("CHAT_MAX_TOOL_ROUNDS", cls.max_tool_rounds)),
            max_message_chars=int(number("CHAT_MAX_MESSAGE_CHARS", cls.max_message_chars)),
            max_page_chars=int(number("CHAT_MAX_PAGE_CHARS", cls.max_page_chars)),
            max_history_messages=int(number("CHAT_MAX_HISTORY_MESSAGES", cls.max_history_messages)),
            max_history_chars=int(number("CHAT_MAX_HISTORY_CHARS", cls.max_history_chars)),
            session_ttl_seconds=int(number("CHAT_SESSION_TTL_SECONDS", cls.session_ttl_seconds)),
            api_timeout_seconds=number("CHAT_API_TIMEOUT_SECONDS", cls.api_timeout_seconds),
            api_max_retries=int(number("CHAT_API_MAX_RETRIES", cls.api_max_retries)),
            rate_per_minute=int(number("CHAT_RATE_PER_MINUTE", cls.rate_per_minute)),
            daily_tokens=int(number("CHAT_DAILY_TOKENS", cls.daily_tokens)),
        )


class ChatRefused(Exception):
    """A question the function will not send on: HTTP `status` with a message for the user."""

    def __init__(self, status: int, message: str, retryable: bool = False, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after

    def to_json(self) -> dict[str, Any]:
        return {"type": "error", "status": self.status, "error": self.message, "retryable": self.retryable}


def api_failure(exc: Exception) -> ChatRefused:
    """What the user is told when the Messages API fails, and whether retrying helps."""
    if isinstance(exc, anthropic.RateLimitError):
        API_ERRORS.labels("rate_limit").inc()
        retry = _retry_after(exc) or 20
        return ChatRefused(
            503,
            f"The assistant is rate limited by the Claude API right now. Try again in about {retry} s.",
            True,
            retry,
        )
    if isinstance(exc, anthropic.APIStatusError) and exc.status_code == 529:
        API_ERRORS.labels("overloaded").inc()
        return ChatRefused(503, "The Claude API is overloaded at the moment. Try again in a minute.", True, 30)
    if isinstance(exc, anthropic.APITimeoutError):
        API_ERRORS.labels("timeout").inc()
        return ChatRefused(503, "The Claude API did not answer in time. Try again.", True, 5)
    if isinstance(exc, anthropic.APIConnectionError):
        API_ERRORS.labels("network").inc()
        return ChatRefused(503, "The assistant cannot reach the Claude API (network). Try again later.", True, 10)
    if isinstance(exc, anthropic.AuthenticationError | anthropic.PermissionDeniedError):
        API_ERRORS.labels("auth").inc()
        return ChatRefused(
            502, "The Claude API rejected the assistant's API key: an operator must fix ANTHROPIC_API_KEY."
        )
    if isinstance(exc, anthropic.APIStatusError) and exc.status_code >= 500:
        API_ERRORS.labels("server").inc()
        return ChatRefused(503, "The Claude API failed on its side. Try again in a moment.", True, 10)
    if isinstance(exc, anthropic.APIStatusError):
        API_ERRORS.labels("request").inc()
        return ChatRefused(502, f"The Claude API refused the request ({exc.status_code}).")
    API_ERRORS.labels("other").inc()
    return ChatRefused(502, "The assistant failed to talk to the Claude API.")


def _retry_after(exc: anthropic.APIStatusError) -> int | None:
    try:
        value = exc.response.headers.get("retry-after")
        return max(1, int(float(value))) if value else None
    except (TypeError, ValueError):
        return None


def _content_for_api(block: Any) -> dict[str, Any] | None:
    if block.type == "text":
        return {"type": "text", "text": block.text} if block.text else None
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    return None


@dataclass
class Assistant:
    """Answers one question: memory in, tool loop against the Messages API with streaming, memory out."""

    config: ChatConfig
    memory: ConversationMemory
    reader: PlatformReader
    redactor: SecretRedactor
    client: Any = field(default=None)
    limits: ChatLimits | None = None
    minimizer: PersonalDataMinimizer = field(default_factory=PersonalDataMinimizer)

    def __post_init__(self) -> None:
        if self.client is None and self.config.api_key:
            self.client = anthropic.Anthropic(
                api_key=self.config.api_key,
                base_url=self.config.base_url,
                max_retries=self.config.api_max_retries,
                timeout=self.config.api_timeout_seconds,
            )

    def check(self, session_id: Any, question: Any, page: Any) -> tuple[str, str, dict[str, Any]]:
        """The validated (session_id, question, page context), or ChatRefused (400/413/503)."""
        if not isinstance(session_id, str) or not valid_session_id(session_id):
            raise ChatRefused(400, "session_id must be 8-64 characters of letters, digits, '-' or '_'.")
        if not isinstance(question, str) or not question.strip():
            raise ChatRefused(400, "message must be a non-empty string.")
        if len(question) > self.config.max_message_chars:
            raise ChatRefused(
                413,
                f"The message is too long ({len(question)} characters; the limit is {self.config.max_message_chars}).",
            )
        page = page if page is not None else {}
        if not isinstance(page, dict):
            raise ChatRefused(400, "page must be a JSON object (the page context).")
        if nesting_depth(page) > MAX_JSON_DEPTH:
            raise ChatRefused(400, f"The page context nests too deeply (more than {MAX_JSON_DEPTH} levels).")
        page_chars = len(json.dumps(page, default=str))
        if page_chars > self.config.max_page_chars:
            raise ChatRefused(
                413,
                f"The page context is too large ({page_chars} characters; the limit is {self.config.max_page_chars}).",
            )
        if self.client is None:
            raise ChatRefused(
                503,
                "The assistant is not configured: no Claude API key (set ANTHROPIC_API_KEY for the chat function). "
                "The rest of the platform works without it.",
            )
        return session_id, self.redactor.redact(question.strip()), self.redactor.redact_data(page)

    def answer(self, session_id: str, question: str, page: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Events of one answer. The first `next()` opens the first API stream, so an API that is down raises
        ChatRefused before anything is sent; later failures come as an "error" event."""
        started = time.perf_counter()
        try:
            if self.limits is not None:
                self.limits.admit(session_id)
            history = self.memory.messages(session_id)
        except OverLimit as exc:
            CHAT_REQUESTS.labels("over_limit").inc()
            raise ChatRefused(429, exc.message, True, exc.retry_after) from None
        except redis.RedisError as exc:
            raise ChatRefused(
                503, "The assistant's memory (Redis) is unavailable. Try again shortly.", True, 5
            ) from exc
        messages: list[dict[str, Any]] = [*history, {"role": "user", "content": question}]
        toolbox = ToolBox(self.reader, page, self.redactor, self.minimizer)
        system = system_blocks(page)
        tools = [tool.to_api() for tool in TOOLS.values()]
        text_out = StreamRedactor(self.redactor)
        answer_parts: list[str] = []
        tools_used: list[str] = []
        first = True
        for round_no in range(self.config.max_tool_rounds + 1):
            last_round = round_no == self.config.max_tool_rounds
            kwargs: dict[str, Any] = {
                "model": self.config.model,
                "max_tokens": self.config.max_tokens,
                "system": system,
                "messages": messages,
                "tools": tools,
            }
            if last_round:
                kwargs["tool_choice"] = {"type": "none"}
            try:
                with self.client.messages.stream(**kwargs) as stream:
                    if first:
                        first = False
                        yield {"type": "start", "session_id": session_id, "model": self.config.model}
                    for event in stream:
                        if event.type == "text":
                            safe = text_out.feed(event.text)
                            if safe:
                                answer_parts.append(safe)
                                yield {"type": "text", "text": safe}
                    final = stream.get_final_message()
                self._spend(final)
            except anthropic.AnthropicError as exc:
                refused = api_failure(exc)
                log.warning("Messages API call failed: %s (%s)", type(exc).__name__, refused.message)
                if first:
                    CHAT_REQUESTS.labels("api_error").inc()
                    raise refused from None
                CHAT_REQUESTS.labels("api_error_midway").inc()
                yield refused.to_json()
                return
            tail = text_out.flush()
            if tail:
                answer_parts.append(tail)
                yield {"type": "text", "text": tail}
            content = [c for c in (_content_for_api(block) for block in final.content) if c is not None]
            tool_calls = [block for block in final.content if block.type == "tool_use"]
            if final.stop_reason != "tool_use" or not tool_calls:
                break
            messages.append({"role": "assistant", "content": content})
            results = []
            for call in tool_calls:
                tools_used.append(call.name if call.name in TOOLS else "(refused)")
                yield {"type": "tool", "name": call.name[:60], "input": self.redactor.redact_data(call.input)}
                result, is_error = toolbox.run(call.name, call.input)
                TOOL_CALLS.labels(call.name if call.name in TOOLS else "unknown", "error" if is_error else "ok").inc()
                log.info(
                    "session %s tool %s -> %s (%d chars)",
                    session_id,
                    call.name[:60],
                    "error" if is_error else "ok",
                    len(result),
                )
                yield {"type": "tool_result", "name": call.name[:60], "ok": not is_error, "chars": len(result)}
                block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call.id, "content": result}
                if is_error:
                    block["is_error"] = True
                results.append(block)
            messages.append({"role": "user", "content": results})
            if answer_parts and not answer_parts[-1].endswith(("\n", " ")):
                answer_parts.append("\n")
                yield {"type": "text", "text": "\n"}
        answer = "".join(answer_parts).strip() or "(no answer)"
        try:
            self.memory.append_turn(session_id, question, answer, tools_used)
        except redis.RedisError:
            log.warning("session %s: could not store the turn in Redis", session_id)
        CHAT_REQUESTS.labels("answered").inc()
        ANSWER_SECONDS.observe(time.perf_counter() - started)
        yield {"type": "done", "answer": answer, "tools": tools_used, "model": self.config.model}

    def _spend(self, message: Any) -> None:
        """Count the tokens of one API call against the day's budget (never fails the answer)."""
        usage = getattr(message, "usage", None)
        if self.limits is None or usage is None:
            return
        try:
            self.limits.spend(int(usage.input_tokens or 0) + int(usage.output_tokens or 0))
        except redis.RedisError:
            log.warning("could not count %s tokens against the daily budget", usage)
