"""The router's one Kafka producer, replaced by a new one when kafka-python's idempotent producer turns fatal.

kafka-python 3.x makes every producer idempotent by default, and its idempotent (non-transactional) producer
treats any non-retriable error in a produce response as FATAL: from then on it aborts every batch, for good,
with that same error. The S3-backed broker answers a produce with such an error (UNKNOWN_SERVER_ERROR, -1) when
it cannot write to its store, e.g. while the S3 server restarts. The producer then refused everything after the
store was back, so the Broker ingress answered 503 until the router was restarted (ADR 0117). The router now makes
a plain producer (eventing/router/router.py), which has no such state; this wrapper is the guard for one that has.

A Java client must close such a producer and create a new one; so does this wrapper. `send()` notices the fatal
state and starts a replacement in the background (at most one at a time, at most once per `min_interval`):
meanwhile a send fails fast (the ingress answers 503, a sink tries again a second later), and once the new
producer is connected every send goes to it. Nothing acknowledged is lost: a send counts only once its future
succeeds, and what the old producer had not written fails and is sent again (at-least-once; the functions drop
duplicates).

>>> class Fake:
...     def __init__(self): self.fatal, self.sent = False, []
...     def send(self, topic, **kw): self.sent.append(topic); return "future"
...     def close(self, timeout=None): pass
>>> made = []
>>> def factory():
...     made.append(Fake()); return made[-1]
>>> p = RecoveringProducer(factory, is_fatal=lambda f: f.fatal, min_interval=0.0, background=False)
>>> p.send("t", key=None, value=b"1", headers=[])
'future'
>>> made[0].fatal = True  # (in the router the new producer is made in a background thread)
>>> p.send("t", key=None, value=b"2", headers=[]), len(made), p.replaced, made[0].sent, made[1].sent
('future', 2, 1, ['t'], ['t'])
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka.errors import KafkaError

log = logging.getLogger(__name__)

MIN_REPLACE_INTERVAL_S = 1.0  # while the broker still fails, a new producer turns fatal again: not more often


class ProducerReplacing(KafkaError):  # type: ignore[misc]  # (kafka-python ships no type hints)
    """A send refused at once: the producer is fatal and its replacement is not ready yet (retryable)."""

    retriable = True


def kafka_producer_is_fatal(producer: Any) -> bool:
    """kafka-python's idempotent producer is in its fatal state (it will fail every send from now on).

    Reads kafka-python's transaction manager (no public API says it; the version is pinned in constraints.txt and
    tests/eventing/router/test_router_producer.py fails if this stops seeing the state)."""
    manager = getattr(producer, "_transaction_manager", None)
    has_fatal = getattr(manager, "has_fatal_error", None)
    return bool(has_fatal()) if callable(has_fatal) else False


class RecoveringProducer:
    """A KafkaProducer (made by `factory`) that is replaced when `is_fatal` says it can no longer send."""

    def __init__(
        self,
        factory: Callable[[], Any],
        is_fatal: Callable[[Any], bool] = kafka_producer_is_fatal,
        min_interval: float = MIN_REPLACE_INTERVAL_S,
        on_replaced: Callable[[], None] | None = None,
        background: bool = True,
    ) -> None:
        self._factory = factory
        self._is_fatal = is_fatal
        self.min_interval = min_interval
        self._on_replaced = on_replaced
        self._background = background
        self._lock = threading.Lock()
        self._current = factory()  # the first one is made by the caller's thread: errors reach the caller
        self._replacing = False
        self._last_attempt = float("-inf")
        self._closed = False
        self.replaced = 0  # producers replaced since start

    @property
    def current(self) -> Any:
        return self._current

    def send(self, topic: str, **kwargs: Any) -> Any:
        """KafkaProducer.send on the current producer (replacing it first when it is fatal).

        While the replacement is being made the send fails at once with ProducerReplacing: a fatal producer's
        `send` would otherwise wait up to `max_block_ms` (60 s) for metadata it never fetches again."""
        producer = self._current
        if self._is_fatal(producer):
            self._replace(producer)
            producer = self._current
            if self._is_fatal(producer):
                raise ProducerReplacing("the Kafka producer failed for good and is being replaced; try again")
        return producer.send(topic, **kwargs)

    def flush(self, timeout: float | None = None) -> None:
        self._current.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        with self._lock:
            self._closed = True
            producer = self._current
        producer.close(timeout)

    # --- replacing ---------------------------------------------------------------------------------------------
    def _replace(self, failed: Any) -> None:
        with self._lock:
            now = time.monotonic()
            if (
                self._closed
                or self._replacing
                or failed is not self._current
                or now - self._last_attempt < self.min_interval
            ):
                return
            self._replacing = True
            self._last_attempt = now
        if self._background:
            threading.Thread(target=self._make_new, args=(failed,), name="router-producer-replace", daemon=True).start()
        else:
            self._make_new(failed)

    def _make_new(self, failed: Any) -> None:
        try:
            fresh = self._factory()
        except Exception as exc:  # the broker unreachable: the next failing send tries again
            log.warning("router: a new Kafka producer could not be created (%s); trying again", exc)
            with self._lock:
                self._replacing = False
            return
        with self._lock:
            self._replacing = False
            if self._closed:
                stale, keep = fresh, None
            else:
                stale, keep = failed, fresh
                self._current = fresh
                self.replaced += 1
        if keep is not None:
            log.warning("router: the Kafka producer was in a fatal state (%s); replaced by a new one", _reason(failed))
            if self._on_replaced is not None:
                self._on_replaced()
        _close_quietly(stale)


def _reason(producer: Any) -> str:
    manager = getattr(producer, "_transaction_manager", None)
    return str(getattr(manager, "last_error", None) or "fatal error")


def _close_quietly(producer: Any, timeout: float = 1.0, attempts: int = 3) -> None:
    """Close a replaced producer (its sender thread ends): a fatal producer aborts what it holds within its retry
    backoff, so the flush inside close() ends at once; a send that raced the swap may need another try."""
    for _ in range(attempts):
        try:
            producer.close(timeout)
            return
        except Exception as exc:  # a record still aborting, or a kafka-python error while closing: try again
            log.info("router: closing a replaced Kafka producer: %s", exc)
