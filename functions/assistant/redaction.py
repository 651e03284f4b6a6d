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
