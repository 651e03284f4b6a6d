"""Who may call what: the bearer-token switch of the functions that answer people and programs outside the
platform's event flow.

predict-one, the assistant (chat) and the SQL service (`PROTECTED`) require `Authorization: Bearer <token>` when
COELHO_API_TOKEN is set (on a cluster from a Secret; embedded, unset by default and every server on 127.0.0.1).
The token is compared in constant time; a request without it, or with another, is answered 401 with a
`WWW-Authenticate: Bearer` challenge before anything else is done. Health probes, /metrics and /openapi.json stay
open (`OPEN_PATHS`): the kubelet and Prometheus scrape without a token, and they reveal no data.
learn-one, checkpoint and the lake take events only from the Broker and stay cluster-local: no token.

Clients in the repository send the token with `auth_headers()` (empty when the variable is unset): the dashboard's
predictions, assistant panel and SQL page, `coelho sql`, the assistant's lake queries and the benches. A client that
may call any function (`coelho invoke`) uses `function_auth_headers(name)`, which sends it to `PROTECTED` only: the
cluster-local functions never see it.

Posting to the Broker is the other direction: with OIDC on (docs/adr/0107), every sender presents a token for the
Broker's audience, a projected ServiceAccount token mounted at COELHO_BROKER_TOKEN_FILE. `broker_headers()` reads
it (again whenever the file changes: the kubelet rotates it) and `post_event` sends it; unset, no header.

    >>> gate = TokenGate.from_environ({"COELHO_API_TOKEN": "s3cret-token-of-32-characters-xx"})
    >>> gate.allows({"PATH_INFO": "/predict/tfd", "HTTP_AUTHORIZATION": "Bearer s3cret-token-of-32-characters-xx"})
    True
    >>> gate.allows({"PATH_INFO": "/predict/tfd", "HTTP_AUTHORIZATION": "Bearer guess"})
    False
    >>> gate.allows({"PATH_INFO": "/health/readiness"}), gate.allows({"PATH_INFO": "/metrics"})
    (True, True)
    >>> TokenGate.from_environ({}) is None, auth_headers({}), auth_headers({"COELHO_API_TOKEN": "t"})
    (True, {}, {'Authorization': 'Bearer t'})
    >>> token_set = {"COELHO_API_TOKEN": "t"}
    >>> function_auth_headers("sql", token_set), function_auth_headers("learn", token_set)
    ({'Authorization': 'Bearer t'}, {})
"""

from __future__ import annotations

import hmac
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BROKER_TOKEN_ENV",
    "OPEN_PATHS",
    "PROTECTED",
    "TOKEN_ENV",
    "TokenGate",
    "auth_headers",
    "broker_headers",
    "function_auth_headers",
]

TOKEN_ENV = "COELHO_API_TOKEN"
BROKER_TOKEN_ENV = "COELHO_BROKER_TOKEN_FILE"  # a projected ServiceAccount token for the Broker's audience
PROTECTED = frozenset({"predict", "chat", "sql"})  # the functions that require the token when it is set
OPEN_PATHS = ("/health/", "/metrics", "/openapi.json")  # probes, scrapes and the API's description
CHALLENGE = 'Bearer realm="coelho"'


@dataclass(frozen=True)
class TokenGate:
    """The expected `Authorization` header value, as bytes for `hmac.compare_digest`."""

    expected: bytes

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> TokenGate | None:
        """The gate when COELHO_API_TOKEN is set (not empty), else None: no check."""
        env = os.environ if environ is None else environ
        token = env.get(TOKEN_ENV, "").strip()
        return cls(f"Bearer {token}".encode()) if token else None

    def allows(self, environ: Mapping[str, Any]) -> bool:
        """The request may go on: it carries the token, or asks for an open path."""
        path = environ.get("PATH_INFO", "")
        if path.startswith(OPEN_PATHS):
            return True
        given = environ.get("HTTP_AUTHORIZATION", "")
        return hmac.compare_digest(given.encode("latin-1", "replace"), self.expected)

    @staticmethod
    def challenge(environ: Mapping[str, Any]) -> tuple[list[tuple[str, str]], dict[str, str]]:
        """The 401's headers and body: no token, or a wrong one (never which part was wrong)."""
        if environ.get("HTTP_AUTHORIZATION"):
            header = CHALLENGE + ', error="invalid_token"'
            body = {"error": "the bearer token is not valid"}
        else:
            header = CHALLENGE
            body = {"error": "this endpoint requires a bearer token: send Authorization: Bearer <COELHO_API_TOKEN>"}
        return [("WWW-Authenticate", header)], body


def auth_headers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers a client sends to predict-one, the assistant or SQL: the bearer token when COELHO_API_TOKEN is
    set, else none."""
    env = os.environ if environ is None else environ
    token = env.get(TOKEN_ENV, "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def function_auth_headers(function: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`auth_headers()` for a function that asks for the token (`PROTECTED`), none for the others: a client that
    may call any function sends the token only where it is checked."""
    return auth_headers(environ) if function in PROTECTED else {}


class BrokerTokenUnreadable(OSError):
    """COELHO_BROKER_TOKEN_FILE is set but names no readable, non-empty file: the post would be refused (401)."""


_broker_token_lock = threading.Lock()
_broker_token: tuple[str, tuple[int, int, int], str] | None = None  # (path, (inode, mtime_ns, size), token)


def broker_headers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers a post to the Broker carries: `Authorization: Bearer <token>` read from the file
    COELHO_BROKER_TOKEN_FILE names, else none. The file is read again when its inode, mtime or size changes (the
    kubelet replaces a projected token by swapping a symlink, well before it expires); an unchanged file costs one
    stat. BrokerTokenUnreadable (an OSError, as a failed post is) when the file cannot be read or is empty.

        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "token"
        >>> _ = path.write_text("first\\n")
        >>> broker_headers({"COELHO_BROKER_TOKEN_FILE": str(path)}), broker_headers({})
        ({'Authorization': 'Bearer first'}, {})
    """
    global _broker_token
    env = os.environ if environ is None else environ
    path = env.get(BROKER_TOKEN_ENV, "").strip()
    if not path:
        return {}
    try:
        info = os.stat(path)
        stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        cached = _broker_token
        if cached is not None and cached[0] == path and cached[1] == stamp:
            return {"Authorization": f"Bearer {cached[2]}"}
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except OSError as exc:
        raise BrokerTokenUnreadable(f"{BROKER_TOKEN_ENV}={path}: {exc.strerror or exc}") from None
    if not token:
        raise BrokerTokenUnreadable(f"{BROKER_TOKEN_ENV}={path}: the file is empty")
    with _broker_token_lock:
        _broker_token = (path, stamp, token)
    return {"Authorization": f"Bearer {token}"}
