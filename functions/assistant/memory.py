"""Conversation memory of the assistant: one Redis list per chat session, with an expiry and a bounded length.

Only the user's questions and the assistant's final answers are kept (tool calls and their results are
re-fetched when needed, so old numbers never pass for live ones). The list lives at
`coelho:chat:session:<id>:messages`; every append trims it to the last `max_messages` entries, drops the
oldest turns while the total text exceeds `max_chars`, and renews the expiry (`ttl_seconds`).

A session's history is readable only with its id, and only on the channel it was written on: the dashboard's
sessions (`/chat`, ids of 128 random bits the dashboard makes) live under `coelho:chat:session:`, the questions that
arrive as CloudEvents under `coelho:chat:event-session:` (`EVENT_KEY_PREFIX`), so whoever may publish a
`chat.requested` event cannot read, nor add to, a dashboard conversation by naming its id. No endpoint lists
sessions.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

SESSION_ID = re.compile(r"^[A-Za-z0-9_\-]{8,64}$")
KEY_PREFIX = "coelho:chat:session:"
EVENT_KEY_PREFIX = "coelho:chat:event-session:"


def valid_session_id(session_id: str) -> bool:
    return bool(SESSION_ID.match(session_id or ""))


@dataclass
class ConversationMemory:
    redis: Any  # a redis.Redis (decode_responses=True or not)
    ttl_seconds: int = 24 * 3600
    max_messages: int = 20  # user + assistant messages kept per session (10 turns)
    max_chars: int = 24_000  # total text of the kept messages
    prefix: str = KEY_PREFIX  # the channel's namespace (KEY_PREFIX or EVENT_KEY_PREFIX)

    def key(self, session_id: str) -> str:
        if not valid_session_id(session_id):
            raise ValueError("session id must be 8-64 characters of letters, digits, '-' or '_'")
        return f"{self.prefix}{session_id}:messages"

    def history(self, session_id: str) -> list[dict[str, Any]]:
        """The kept messages, oldest first: [{"role": "user"|"assistant", "content": str, "tools": [...], "at": ts}]."""
        raw = self.redis.lrange(self.key(session_id), 0, -1)
        out = []
        for item in raw:
            try:
                out.append(json.loads(item))
            except ValueError:
                continue
        return out

    def messages(self, session_id: str) -> list[dict[str, Any]]:
        """The history as Messages API messages: alternating roles, starting with the user."""
        out: list[dict[str, Any]] = []
        for entry in self.history(session_id):
            role, content = entry.get("role"), entry.get("content")
            if role not in ("user", "assistant") or not isinstance(content, str) or not content:
                continue
            if out and out[-1]["role"] == role:  # never two in a row (e.g. an answer that failed midway)
                out[-1]["content"] += "\n" + content
            else:
                out.append({"role": role, "content": content})
        while out and out[0]["role"] != "user":
            out.pop(0)
        if out and out[-1]["role"] == "user":  # a question whose answer was never stored
            out.pop()
        return out

    def append_turn(self, session_id: str, question: str, answer: str, tools: list[str]) -> None:
        key = self.key(session_id)
        now = time.time()
        entries = [
            json.dumps({"role": "user", "content": question, "at": now}),
            json.dumps({"role": "assistant", "content": answer, "tools": tools, "at": now}),
        ]
        pipe = self.redis.pipeline()
        pipe.rpush(key, *entries)
        pipe.ltrim(key, -self.max_messages, -1)
        pipe.expire(key, self.ttl_seconds)
        pipe.execute()
        self._trim_chars(key)

    def _trim_chars(self, key: str) -> None:
        raw = self.redis.lrange(key, 0, -1)
        sizes = [len(json.loads(item).get("content", "")) for item in raw]
        drop = 0
        while sum(sizes[drop:]) > self.max_chars and len(sizes) - drop > 2:
            drop += 2  # whole turns: a user message and its answer
        if drop:
            self.redis.ltrim(key, drop, -1)

    def clear(self, session_id: str) -> None:
        self.redis.delete(self.key(session_id))
