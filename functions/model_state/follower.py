"""Keeps a process's replicas fresh: follows the domains' logs and learns what arrives (predict-one, checkpoint)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis

from functions.model_state.keys import key
from functions.model_state.replica import ModelReplica

log = logging.getLogger("coelho.functions.model_state.online_model")


class LogFollower(threading.Thread):
    """Keeps replicas fresh: blocks on the domains' logs (XREAD, ~100 ms) and applies what arrives."""

    def __init__(self, client: redis.Redis, replicas: list[ModelReplica], block_ms: int = 100) -> None:
        super().__init__(name="coelho-log-follower", daemon=True)
        self.redis: Any = client
        self.replicas = replicas
        self.block_ms = block_ms
        self.stopping = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.step()
                self.error = None
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self.error = f"redis: {exc}"
                self.stopping.wait(0.5)
            except Exception as exc:  # keep following; readiness reports it
                self.error = f"{type(exc).__name__}: {exc}"
                log.exception("log follower")
                self.stopping.wait(0.5)

    def step(self) -> None:
        by_domain: dict[str, list[ModelReplica]] = {}
        for replica in self.replicas:
            by_domain.setdefault(replica.domain.name, []).append(replica)
        paused = self.redis.mget([key(d, "paused_at") for d in by_domain])
        streams = {}
        for (domain, replicas), pause in zip(by_domain.items(), paused, strict=True):
            pause_at = int(pause) if pause is not None else None
            for replica in replicas:
                replica.catch_up(paused_at=pause_at, check_pause=False)
            position = min(r.state.seq for r in replicas)
            if pause_at is None or position < pause_at:  # a paused, caught-up domain has nothing to wait for
                streams[key(domain, "log")] = f"{position}-0"
        if not streams:
            self.stopping.wait(self.block_ms / 1000)
            return
        # Wait for anything new (the entries are read again by catch_up, which handles pauses and gaps).
        self.redis.xread(streams, count=1, block=self.block_ms)

    def stop(self) -> None:
        self.stopping.set()
