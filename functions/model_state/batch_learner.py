"""Learns one domain's committed log entries in batches, off the request path (docs/adr/0076).

A learn request that wants no reply (`?reply=none`, every learn Trigger) commits its event to the log and returns;
`BatchLearner.poke` wakes this thread, which catches every replica of the domain up from the log.
"""

from __future__ import annotations

import logging
import threading
import time

from functions.model_state.replica import ModelReplica

log = logging.getLogger("coelho.functions.model_state")

BATCH_SIZE = 256  # log entries per read and per hold of the replica lock (a forest: ~0.2 s)
MAX_BACKOFF_S = 30.0  # longest wait between two attempts of the applier while Redis is unreachable


class BatchLearner:
    """Applies one domain's log to this process's replicas of it, in batches, off the request path.

    A request that wants no reply (`?reply=none`, every learn Trigger) commits its event to the log and returns;
    `poke` wakes this thread, which catches every replica up from the log (`ModelReplica.catch_up`: one XRANGE per
    BATCH_SIZE entries, applied in log order under the replica's lock, paused domains respected). Exactly once
    and in order as before: the log is the commit point and the only order. While busy it also looks every
    `idle_s` on its own (entries committed by other replicas); after `exit_after_s` without a poke, and only when
    its last attempt succeeded, it ends, and the next poke starts it again. While Redis is unreachable it retries
    with a backoff (up to MAX_BACKOFF_S), logging the first failure and the recovery: the entries wait in the log.
    """

    def __init__(
        self, domain_name: str, replicas: list[ModelReplica], idle_s: float = 1.0, exit_after_s: float = 30.0
    ) -> None:
        self.domain_name = domain_name
        self.replicas = replicas
        self.idle_s = idle_s
        self.exit_after_s = exit_after_s
        self.wake = threading.Event()
        self.error: str | None = None
        self.running = False
        self.thread: threading.Thread | None = None
        self._poked_at = 0.0
        self._lock = threading.Lock()

    def poke(self) -> None:
        with self._lock:
            self._poked_at = time.monotonic()
            self.wake.set()
            if not self.running:
                self.running = True
                self.thread = threading.Thread(target=self._run, name=f"coelho-applier-{self.domain_name}", daemon=True)
                self.thread.start()

    def _run(self) -> None:
        failures = 0
        while True:
            timeout = self.idle_s * 2 ** min(failures, 10)  # backs off while Redis is away
            woken = self.wake.wait(min(timeout, MAX_BACKOFF_S))
            if not woken and not failures and time.monotonic() - self._poked_at > self.exit_after_s:
                with self._lock:
                    if not self.wake.is_set():  # else a poke came in meanwhile: keep going
                        self.running = False
                        return
            self.wake.clear()
            try:
                for replica in self.replicas:
                    replica.catch_up(batch=BATCH_SIZE)
            except Exception as exc:  # Redis away: the entries stay in the log; never end before they are applied
                failures += 1
                self.error = f"{type(exc).__name__}: {exc}"
                if failures == 1:
                    log.warning("%s: applier: %s (retrying)", self.domain_name, self.error)
                continue
            if failures:
                log.warning("%s: applier: caught up again after %d failed attempts", self.domain_name, failures)
            failures = 0
            self.error = None
