"""Keeps secrets out of the assistant's replies, tool results and logs.

A `SecretRedactor` knows the values of the secret environment variables (names containing KEY, SECRET,
TOKEN, PASSWORD, CREDENTIAL, ...) and well-known key shapes (Anthropic, AWS access keys, bearer tokens, URLs
with a password), and replaces them with "[redacted]". `StreamRedactor` does the same on text that arrives
in chunks, holding back just enough characters that a secret split across two chunks is still caught.

>>> r = SecretRedactor.from_environ({"ANTHROPIC_API_KEY": "sk-ant-abc123xyz", "HOME": "/root"})
>>> r.redact("key is sk-ant-abc123xyz, home /root")
'key is [redacted], home /root'
>>> s = StreamRedactor(r)
>>> s.feed("key sk-ant-ab") + s.feed("c123xyz!") + s.flush()
'key [redacted]!'
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[redacted]"
_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)
_NOT_SECRET_NAMES = {"AWS_ACCESS_KEY_ID_FILE", "KEYRING_BACKEND"}
_PATTERNS = (
    re.compile(r"sk-ant-[A-Za-z0-9_\-]{6,}"),  # Anthropic keys
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),  # AWS access key ids
    re.compile(r"(?i)bearer\s+[A-Za-z0-9._\-]{12,}"),
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),  # user:password@ in URLs
)
_MAX_PATTERN_TAIL = 64  # how far a pattern match may reach back into held text


def is_secret_name(name: str) -> bool:
    """Secret-looking variable names; access key *ids* (AWS_ACCESS_KEY_ID, ..._S3_ACCESS_KEY) are identifiers.

    >>> [is_secret_name(n) for n in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "COELHO_S3_ACCESS_KEY", "HOME")]
    [True, False, False, False]
    """
    upper = name.upper()
    if name in _NOT_SECRET_NAMES or ("ACCESS_KEY" in upper and "SECRET" not in upper):
        return False
    return bool(_SECRET_NAME.search(name))


class SecretRedactor:
    """Replaces known secret values and key-shaped strings in text and in JSON-like structures."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SecretRedactor:
        env = os.environ if environ is None else environ
        values = [v for k, v in env.items() if is_secret_name(k)]
        return cls(values)

    @property
    def longest(self) -> int:
        return max([len(s) for s in self.secrets] + [_MAX_PATTERN_TAIL])

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern in _PATTERNS:
            text = pattern.sub(REDACTED, text)
        return text

    def spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of every secret value and key-shaped match in `text`."""
        found = []
        for secret in self.secrets:
            at = text.find(secret)
            while at != -1:
                found.append((at, at + len(secret)))
                at = text.find(secret, at + 1)
        for pattern in _PATTERNS:
            found.extend(m.span() for m in pattern.finditer(text))
        return sorted(found)

    def redact_data(self, value: Any) -> Any:
        """A copy of a JSON-like value with every string redacted (keys included)."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {self.redact(str(k)): self.redact_data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_data(v) for v in value]
        return value


class StreamRedactor:
    """Redacts a text stream: `feed` returns what is safe to emit now, `flush` the rest at the end."""

    def __init__(self, redactor: SecretRedactor) -> None:
        self.redactor = redactor
        self._held = ""

    def feed(self, chunk: str) -> str:
        raw = self._held + chunk
        cut = len(raw) - (self.redactor.longest - 1)
        if cut <= 0:
            self._held = raw
            return ""
        # Never cut through something that is, or may still become, a secret: move the cut to its start.
        spans = self.redactor.spans(raw)
        moved = True
        while moved:  # overlapping matches may each move the cut
            moved = False
            for start, end in spans:
                if start < cut and (cut < end or end == len(raw)):
                    cut, moved = start, True
        self._held = raw[cut:]
        return self.redactor.redact(raw[:cut])

    def flush(self) -> str:
        out, self._held = self.redactor.redact(self._held), ""
        return out


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message (and drops args, already rendered)."""

    def __init__(self, redactor: SecretRedactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the record as is
            return True
        record.msg = self.redactor.redact(message)
        record.args = None
        if record.exc_text:
            record.exc_text = self.redactor.redact(record.exc_text)
        return True


# --- personal data: what the model API is sent of the people behind the events -----------------------------------
# Identifiers of people, pseudonymised (the same person gets the same pseudonym within a chat process, so the model
# can still tell that two rows are one user's); what points at a person or their browsing, removed; coordinates cut
# to one decimal (about 11 km). Keys are matched as they appear in events ("user_id") and as lake columns
# ("location_lat"). Transactions' amounts, categories, predictions and metrics pass: they are what is asked about.
PSEUDONYMISED = frozenset({"user_id", "customer_id", "driver_id", "session_id", "vehicle_id"})
REMOVED = frozenset({"ip_address", "user_agent", "search_query", "page_url", "referrer_url"})
COARSENED_SUFFIXES = ("lat", "lon")
REMOVED_TEXT = "[removed: personal data]"


class PersonalDataMinimizer:
    """Minimises personal data in tool results before they go to the model API.

    >>> m = PersonalDataMinimizer(b"k")
    >>> out = m.minimize({"user_id": "u-17", "ip_address": "10.2.3.4", "location": {"lat": 40.4168, "lon": -3.7038}})
    >>> out["user_id"].startswith("user_id~"), out["ip_address"], out["location"]
    (True, '[removed: personal data]', {'lat': 40.4, 'lon': -3.7})
    >>> rows = m.minimize({"columns": [{"name": "user_id"}, {"name": "amount"}], "rows": [["u-17", 12.5]]})
    >>> rows["rows"][0][0] == out["user_id"], rows["rows"][0][1]
    (True, 12.5)
    """

    def __init__(self, key: bytes | None = None) -> None:
        import secrets

        self.key = key if key is not None else secrets.token_bytes(32)

    def pseudonym(self, name: str, value: Any) -> str:
        import hashlib
        import hmac

        digest = hmac.new(self.key, str(value).encode("utf-8", "replace"), hashlib.sha256).hexdigest()
        return f"{name}~{digest[:10]}"

    def field(self, name: str, value: Any) -> Any:
        lower = name.lower()
        if value is None or isinstance(value, bool):
            return value
        if lower in PSEUDONYMISED:
            return self.pseudonym(lower, value)
        if lower in REMOVED:
            return REMOVED_TEXT
        if isinstance(value, float) and lower.rsplit("_", 1)[-1] in COARSENED_SUFFIXES:
            return round(value, 1)
        return self.minimize(value)

    def minimize(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            columns = value.get("columns")
            rows = value.get("rows")
            if isinstance(columns, list) and isinstance(rows, list):  # a SQL answer: rows of columns
                names = [str(c.get("name", "")) if isinstance(c, Mapping) else str(c) for c in columns]
                out = {k: self.minimize(v) for k, v in value.items() if k != "rows"}
                out["rows"] = [
                    [self.field(n, cell) for n, cell in zip(names, row, strict=False)] if isinstance(row, list) else row
                    for row in rows
                ]
                return out
            return {k: self.field(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.minimize(v) for v in value]
        return value
