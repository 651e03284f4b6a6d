"""The failure contract of every function: which exception becomes which HTTP status, and its JSON body.

What the Knative dispatcher retries: only 5xx, 404, 408, 409, 429. So: not a CloudEvent, a type the function does
not take, bad data -> 400 with the reason (never retried, nothing lost: the Broker dead-letters it);
a dependency that is down -> 503 (retried); anything else -> 500. Never a 2xx for work not done. What a client is
told never holds an internal address or a stack trace: a 503 names the dependency's failure with its addresses
scrubbed, a 500 the kind of error and its message, scrubbed the same way, and a reference to the log line that
holds the trace.

    >>> error_response("learn", UnsupportedEvent("data is not JSON"))
    (400, {'error': 'data is not JSON'})
    >>> error_response("learn", DependencyUnavailable("Error 111 connecting to 10.0.0.5:6379."))
    (503, {'error': 'dependency unavailable, retry later: Error 111 connecting to <internal address>.'})
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection
from typing import Any

from eventing.schema import ValidationError
from functions.middleware.events import UnsupportedEvent
from functions.middleware.limits import scrub

log = logging.getLogger("coelho.functions")

__all__ = ["DependencyUnavailable", "UnsupportedEvent", "error_response", "is_dependency_error"]


class DependencyUnavailable(RuntimeError):
    """A dependency (Redis, MLflow, S3) is down or not ready: the caller should retry (HTTP 503)."""


def is_dependency_error(exc: BaseException) -> bool:
    """A down or unreachable dependency: Redis or HTTP connection errors, timeouts, `DependencyUnavailable`."""
    if isinstance(exc, DependencyUnavailable):
        return True
    try:
        import redis.exceptions as redis_errors

        if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError | redis_errors.BusyLoadingError):
            return True
    except ImportError:  # pragma: no cover
        pass
    try:
        import requests

        if isinstance(exc, requests.ConnectionError | requests.Timeout):
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(exc, ConnectionError)


def error_response(function: str, exc: BaseException, accepts: Collection[str] = ()) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of the failure contract for an exception raised while handling a request."""
    if isinstance(exc, ValidationError):
        return 400, exc.to_dict()
    if isinstance(exc, UnsupportedEvent):
        body: dict[str, Any] = {"error": scrub(str(exc))}
        if accepts:
            body["accepted_types"] = sorted(accepts)
        return 400, body
    if is_dependency_error(exc):
        return 503, {"error": f"dependency unavailable, retry later: {scrub(str(exc))}"}
    what = f"{type(exc).__name__}: {scrub(str(exc))[:200]}"
    ref = hashlib.sha256(f"{function}|{what}".encode()).hexdigest()[:12]  # the same failure, the same ref
    log.error("%s failed (ref %s)", function, ref, exc_info=exc)
    return 500, {"error": f"internal error ({what}); the function's log has the trace as ref {ref}"}
