"""A stand-in for the Anthropic Messages API: a real HTTP server on 127.0.0.1 that tests script and inspect.

It speaks POST /v1/messages the way the API does, non-streaming (one JSON message) and streaming
(`stream: true`: server-sent events message_start, content_block_start / content_block_delta (text_delta,
input_json_delta) / content_block_stop, message_delta, message_stop), so the real anthropic SDK talks to it
unchanged through ANTHROPIC_BASE_URL.

Each request takes the next scripted reply from a queue; a reply is one of:
- `text("...")` / `tool_use("name", {...})` blocks in a list: an assistant message made of them;
- `error(429)` / `error(529)` / `error(500)`: the API's error body with that status;
- a callable `(request_json) -> reply`: computed from what the request carries (e.g. an answer quoting the
  tool_result the function sent back), so an answer is built from the platform's live data.
When the queue is empty the `default` reply is used. Every request is recorded (`requests`), with its headers
and JSON body, so tests can assert the tool loop, the memory, the page context and the size limits.

    >>> with AnthropicStandIn() as api:
    ...     api.script([text("hello")])
    ...     import anthropic
    ...     client = anthropic.Anthropic(api_key="test", base_url=api.url, max_retries=0)
    ...     client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]).content[0].text
    'hello'
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = list[dict[str, Any]] | dict[str, Any] | Callable[[dict[str, Any]], Any]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use(name: str, tool_input: dict[str, Any], block_id: str | None = None) -> dict[str, Any]:
    return {"type": "tool_use", "id": block_id, "name": name, "input": tool_input}


def error(status: int, message: str | None = None) -> dict[str, Any]:
    return {"error_status": status, "message": message or f"stand-in error {status}"}


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def system_text(self) -> str:
        system = self.body.get("system", "")
        if isinstance(system, str):
            return system
        return "\n".join(block.get("text", "") for block in system)

    @property
    def tool_names(self) -> list[str]:
        return [tool["name"] for tool in self.body.get("tools", [])]

    def tool_results(self) -> list[dict[str, Any]]:
        """tool_result blocks of the last user message (what the function answered to the last tool_use)."""
        if not self.messages:
            return []
        content = self.messages[-1].get("content")
        if not isinstance(content, list):
            return []
        return [block for block in content if block.get("type") == "tool_result"]


@dataclass
class AnthropicStandIn:
    """The server. Use as a context manager; `url` is what ANTHROPIC_BASE_URL should be."""

    default: Reply = field(default_factory=lambda: [text("(stand-in: no scripted reply)")])
    chunk_size: int = 7  # characters per text_delta / input_json_delta: exercises reassembly in the SDK
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- scripting --------------------------------------------------------------------------------
    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def _next_reply(self, body: dict[str, Any]) -> Any:
        with self._lock:
            reply = self._queue.popleft() if self._queue else self.default
        while callable(reply):
            reply = reply(body)
        return reply

    # --- lifecycle --------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> AnthropicStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
                return

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._send_json(
                        400, {"type": "error", "error": {"type": "invalid_request_error", "message": "bad JSON"}}
                    )
                    return
                with standin._lock:
                    standin.requests.append(
                        RecordedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                if not self.path.startswith("/v1/messages"):
                    self._send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})
                    return
                reply = standin._next_reply(body)
                if isinstance(reply, dict) and "error_status" in reply:
                    status = int(reply["error_status"])
                    self._send_json(
                        status,
                        {
                            "type": "error",
                            "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": reply["message"]},
                        },
                        extra={"retry-after": "0"} if status in (429, 529) else None,
                    )
                    return
                blocks = [dict(block) for block in (reply if isinstance(reply, list) else [reply])]
                for block in blocks:
                    if block["type"] == "tool_use" and not block.get("id"):
                        block["id"] = f"toolu_standin_{next(standin._ids):04d}"
                message = standin._message(body, blocks)
                if body.get("stream"):
                    self._send_stream(message)
                else:
                    self._send_json(200, message)

            def _send_json(self, status: int, payload: dict[str, Any], extra: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", f"req_standin_{next(standin._ids)}")
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _send_stream(self, message: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                self.end_headers()
                self.close_connection = True
                for event in standin._stream_events(message):
                    chunk = f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
                    self.wfile.write(chunk)
                    self.wfile.flush()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="anthropic-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> AnthropicStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the Messages API shapes --------------------------------------------------------------------
    def _message(self, body: dict[str, Any], blocks: list[dict[str, Any]]) -> dict[str, Any]:
        input_tokens = len(json.dumps(body)) // 4
        output_tokens = sum(len(json.dumps(block)) // 4 for block in blocks)
        stop_reason = "tool_use" if any(block["type"] == "tool_use" for block in blocks) else "end_turn"
        return {
            "id": f"msg_standin_{next(self._ids):04d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "stand-in"),
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }

    def _stream_events(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        start = dict(
            message,
            content=[],
            stop_reason=None,
            usage={"input_tokens": message["usage"]["input_tokens"], "output_tokens": 1},
        )
        events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
        n = self.chunk_size
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                events.append(
                    {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
                )
                value = block["text"]
                for i in range(0, len(value), n):
                    events.append(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": value[i : i + n]},
                        }
                    )
            else:
                events.append(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}},
                    }
                )
                partial = json.dumps(block["input"])
                for i in range(0, len(partial), n):
                    events.append(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": partial[i : i + n]},
                        }
                    )
            events.append({"type": "content_block_stop", "index": index})
        events.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            }
        )
        events.append({"type": "message_stop"})
        return events
