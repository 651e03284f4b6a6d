"""Bounded, clean input at every function: the body size limit, JSON that cannot exhaust the stack, and error
messages that never show an internal address.

The limit is decided from Content-Length before a byte of the body is read (413 past it; 400 for a Content-Length
that is not a non-negative integer); a body without one (chunked) is read up to the limit and no further. It is
COELHO_MAX_BODY_BYTES (default 256 KiB: a domain event is under 2 KB, a chat question with its page context under
50 KB), per function unless the function sets its own default.

    >>> check_body({"CONTENT_LENGTH": "512"}, 1024) is None
    True
    >>> check_body({"CONTENT_LENGTH": "4096"}, 1024)
    (413, 'request body too large: 4096 bytes, the limit is 1024 bytes')
    >>> check_body({"CONTENT_LENGTH": "-1"}, 1024)
    (400, 'Content-Length must be a non-negative integer')
    >>> scrub("Error 111 connecting to 10.0.3.7:6379. Connection refused. (s3 http://seaweed.coelho.svc:8333/x)")
    'Error 111 connecting to <internal address>. Connection refused. (s3 <internal address>)'
    >>> scrub("time 2026-01-02T12:30:00Z is fine")
    'time 2026-01-02T12:30:00Z is fine'
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_MAX_BODY_BYTES", "TooDeep", "check_body", "loads_json", "max_body_bytes", "nesting_depth", "scrub"]

DEFAULT_MAX_BODY_BYTES = 256 * 1024
MAX_BODY_ENV = "COELHO_MAX_BODY_BYTES"
MAX_JSON_DEPTH = 32  # the platform's events nest 2 levels; a page context a few more

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>()]+")
_HOST_PORT = re.compile(r"(?<![\w.-])(?:\d{1,3}(?:\.\d{1,3}){3}|[A-Za-z0-9-]*[A-Za-z][A-Za-z0-9.-]*):\d{2,5}(?![\d:])")


class TooDeep(ValueError):
    """JSON nested deeper than the platform accepts."""


def max_body_bytes(environ: Mapping[str, str] | None = None, default: int = DEFAULT_MAX_BODY_BYTES) -> int:
    """COELHO_MAX_BODY_BYTES when set to a positive integer, else `default` (a bad value stops the function at
    start-up rather than leaving it unbounded).

    >>> max_body_bytes({"COELHO_MAX_BODY_BYTES": "1000"}), max_body_bytes({})
    (1000, 262144)
    """
    env = os.environ if environ is None else environ
    raw = env.get(MAX_BODY_ENV, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise ValueError(f"{MAX_BODY_ENV}={raw!r}: give the largest request body in bytes, a positive integer")
    return int(raw)


def check_body(environ: dict[str, Any] | Mapping[str, Any], limit: int) -> tuple[int, str] | None:
    """None when the request's body is within `limit`, else (status, reason). Decided from Content-Length when
    there is one (nothing read); a chunked body is read up to the limit and, when within it, put back as a buffer
    with its Content-Length, so every reader after this sees an ordinary request."""
    length = environ.get("CONTENT_LENGTH")
    if length:
        if not (length.isascii() and length.isdigit()):
            return 400, "Content-Length must be a non-negative integer"
        if int(length) > limit:
            return 413, f"request body too large: {int(length)} bytes, the limit is {limit} bytes"
        return None
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if (chunked or environ.get("wsgi.input_terminated")) and isinstance(environ, dict):
        stream = environ.get("wsgi.input")
        if stream is None:
            return None
        data = stream.read(limit + 1)
        if len(data) > limit:
            return 413, f"request body too large: more than {limit} bytes, the limit is {limit} bytes"
        environ["wsgi.input"] = io.BytesIO(data)
        environ["CONTENT_LENGTH"] = str(len(data))
    return None


def loads_json(raw: bytes | str) -> Any:
    """json.loads, with JSON nested too deeply for the parser a ValueError (`TooDeep`) like any other bad JSON.

    >>> loads_json(b'{"a": [1]}')
    {'a': [1]}
    >>> loads_json("[" * 100_000 + "]" * 100_000)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    TooDeep: JSON nested too deeply
    """
    try:
        return json.loads(raw)
    except RecursionError:
        raise TooDeep("JSON nested too deeply") from None


def nesting_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """How deeply `value` nests (a scalar is 0), counted up to `limit + 1` (beyond which it stops looking).

    >>> nesting_depth({"a": [1, {"b": 2}]}), nesting_depth(3), nesting_depth([[[[]]]], limit=2)
    (3, 0, 3)
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
            stack.extend((child, depth) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def scrub(text: str) -> str:
    """`text` with URLs and host:port pairs replaced: what a client is told never maps the inside of the
    platform (the full message goes to the function's log)."""
    return _HOST_PORT.sub("<internal address>", _URL.sub("<internal address>", text))
