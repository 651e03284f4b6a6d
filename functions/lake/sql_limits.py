"""What one SQL query over the lake may take (`Limits`), and `SqlError`, the refusal of a query that cannot run.

Limits (from COELHO_SQL_* variables): rows returned (the rest is cut and `truncated` says so), time (the query is
interrupted), memory and threads per connection, concurrent queries, the lake's tables held in memory. Every refusal
or failure caused by the query is a `SqlError` (HTTP 400 with the reason); an unreachable S3 store is
`DependencyUnavailable` (503).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from functions.middleware.events import UnsupportedEvent

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class SqlError(UnsupportedEvent):
    """A query that cannot run as asked: a syntax error, a forbidden statement, an unknown table or column, a
    limit reached. HTTP 400 with the reason."""


@dataclass(frozen=True)
class Limits:
    """How much one query may take. `rows` is the default row limit, `max_rows` the largest a request may ask."""

    rows: int = 10_000
    max_rows: int = 100_000
    timeout_s: float = 10.0
    memory_limit: str = "512MB"
    threads: int = 2
    concurrent: int = 4
    max_query_chars: int = 20_000
    cache_mb: int = 1024  # the lake's latest tables held in memory, at most (LakeCatalog)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """COELHO_SQL_ROWS, COELHO_SQL_MAX_ROWS, COELHO_SQL_TIMEOUT_S, COELHO_SQL_MEMORY_LIMIT, COELHO_SQL_THREADS,
        COELHO_SQL_CONCURRENT, COELHO_SQL_CACHE_MB; unset or empty: the defaults.

        >>> Limits.from_env({"COELHO_SQL_TIMEOUT_S": "5", "COELHO_SQL_ROWS": ""}).timeout_s
        5.0
        """
        env = os.environ if environ is None else environ
        base = cls()
        return cls(
            rows=int(env.get("COELHO_SQL_ROWS") or base.rows),
            max_rows=int(env.get("COELHO_SQL_MAX_ROWS") or base.max_rows),
            timeout_s=float(env.get("COELHO_SQL_TIMEOUT_S") or base.timeout_s),
            memory_limit=str(env.get("COELHO_SQL_MEMORY_LIMIT") or base.memory_limit),
            threads=int(env.get("COELHO_SQL_THREADS") or base.threads),
            concurrent=int(env.get("COELHO_SQL_CONCURRENT") or base.concurrent),
            cache_mb=int(env.get("COELHO_SQL_CACHE_MB") or base.cache_mb),
        )


def error_text(exc: BaseException) -> str:
    """An exception's message without terminal colours (DuckDB's and deltalake's messages may carry them).

    >>> error_text(ValueError("\x1b[1mBinder Error\x1b[0m: no such column "))
    'Binder Error: no such column'
    """
    return _ANSI.sub("", str(exc)).strip()
