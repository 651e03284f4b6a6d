"""Live platform data for the pages, polled in ONE background thread per dashboard process.

Pages never talk to Redis or probe services inside a browser request: their periodic callbacks read the latest
`LiveData` snapshot, which this thread refreshes (model state every second, service health every 2 s). A slow
or dead service therefore delays nothing on screen; it only shows up as "down" in the banner.

A third thread reads the fraud map's transactions every 5 s and scores them with the live champion (ui/risk.py),
only while a page has the map open (`want_map`): a model that nobody looks at is not followed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from coelho.settings import Settings
from eventing.domains import DOMAINS
from ui import state_reader
from ui.health import ServiceStatus, check_services

log = logging.getLogger("coelho.ui")


@dataclass
class DomainLive:
    """Everything a page shows about one domain's model and producer, as of `updated`."""

    domain: str
    model: str | None = None
    version: str | None = None
    events_learned: int | None = None
    behind: int = 0  # events committed to the domain's log that the model has not applied yet (paused, catching up)
    paused: bool | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # metric -> [(events, value)]
    drifts_at: list[float] = field(default_factory=list)  # events learned when drift was detected
    last_checkpoint: dict[str, Any] | None = None
    clusters: dict[str, Any] = field(default_factory=dict)  # ECCI: cluster id -> profile summary
    n_clusters: int | None = None
    n_micro_clusters: int | None = None
    producer_enabled: bool | None = None  # the switch in Redis (None: never set, a producer would stream)
    producer_rate: float | None = None  # the rate the switch sets
    # The producers that really run (platform service or `coelho produce`): producers.controls heartbeats.
    producers: list[dict[str, Any]] = field(default_factory=list)
    log_head: int | None = None  # events committed to the domain's log so far (learn-one's sequence)
    arriving_per_s: float = 0.0  # how fast that log grows: the events actually arriving, whoever sends them
    learned_per_s: float = 0.0
    learning: bool = False  # events were learned in the last few seconds
    last_event_ms: int | None = None
    available: bool = False  # state could be read (Redis up and a model exists)
    # tfd: where the latest logged transactions happened (state_reader.recent_transactions), for the fraud map,
    # each with `risk`: the champion's fraud probability (None: not scored, `risk_problem` says why).
    transactions: list[dict[str, Any]] = field(default_factory=list)
    risk_model: str | None = None  # the model that scored them, after `risk_events_learned` events
    risk_events_learned: int = 0
    risk_problem: str | None = None
    # Every model of the domain (learning side by side): state_reader.read_models rows, plus "learning" (bool).
    models: list[dict[str, Any]] = field(default_factory=list)
    updated: float = 0.0


@dataclass
class MapReading:
    """The map thread's reading of a domain: its latest transactions, each with the champion's `risk`."""

    transactions: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    events_learned: int = 0
    problem: str | None = None


class LiveData:
    """The shared poller. `LiveData.get(settings)` returns the process-wide instance, started on first use."""

    _instance: LiveData | None = None
    _lock = threading.Lock()

    def __init__(self, settings: Settings, model_interval: float = 1.0, health_interval: float = 2.0) -> None:
        self.settings = settings
        self.model_interval = model_interval
        self.health_interval = health_interval
        self.domains: dict[str, DomainLive] = {name: DomainLive(name) for name in DOMAINS}
        self.services: list[ServiceStatus] = []
        self.redis_up = True
        self.services_checked_at = 0.0
        self._rates: dict[str, deque[tuple[float, int]]] = {name: deque(maxlen=30) for name in DOMAINS}
        self._arrivals: dict[str, deque[tuple[float, int]]] = {name: deque(maxlen=30) for name in DOMAINS}
        self._maps: dict[str, MapReading] = {}  # the map thread's latest reading per domain
        self._map_wanted: dict[str, float] = {}  # domain -> when a page last showed its map (monotonic)
        self._map_wake = threading.Event()
        self._scorers: dict[str, Any] = {}  # domain -> ui.risk.ChampionRisk, made on first use
        self._model_rates: dict[tuple[str, str], deque[tuple[float, int]]] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    @classmethod
    def get(cls, settings: Settings) -> LiveData:
        with cls._lock:
            if cls._instance is None:
                cls._instance = LiveData(settings)
                cls._instance.start()
            return cls._instance

    def start(self) -> None:
        for target, name in (
            (self._model_loop, "ui-live-models"),
            (self._health_loop, "ui-live-health"),
            (self._map_loop, "ui-live-map"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._map_wake.set()

    def refresh_now(self) -> None:
        """Ask the model loop to poll at once (after a button changed something)."""
        self._wake.set()

    # --- loops ---------------------------------------------------------------------------------------
    def _model_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_models()
            except Exception:  # never let the poller die: the pages would freeze silently
                log.exception("polling model state failed")
            self._wake.wait(self.model_interval)
            self._wake.clear()

    def _health_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.services = check_services(self.settings)
                self.services_checked_at = time.time()
            except Exception:
                log.exception("checking services failed")
            self._stop.wait(self.health_interval)

    def poll_models(self) -> None:
        client = state_reader.redis_client(self.settings)
        now = time.time()
        for name in DOMAINS:
            try:
                live = state_reader.read_domain(client, name)
                self.redis_up = True
            except state_reader.StateUnavailable:
                self.redis_up = False
                previous = self.domains[name]
                previous.available = False
                continue
            live.updated = now
            self._add_transactions(client, live, now)
            self._add_rate(live, now)
            self._add_model_rates(live, now)
            self.domains[name] = live

    MAP_DOMAINS = ("tfd",)  # domains whose page maps where their events happen
    MAP_INTERVAL_S = 5.0
    MAP_WANTED_S = 60.0  # a map is read and scored while a page showed it this recently

    def want_map(self, domain: str) -> None:
        """A page shows `domain`'s map: read (and score) its transactions, at once if it was not wanted before."""
        now = time.monotonic()
        if now - self._map_wanted.get(domain, -1e9) > self.MAP_WANTED_S:
            self._map_wake.set()
        self._map_wanted[domain] = now

    def _map_loop(self) -> None:
        while not self._stop.is_set():
            for domain in self.MAP_DOMAINS:
                if time.monotonic() - self._map_wanted.get(domain, -1e9) > self.MAP_WANTED_S:
                    continue
                try:
                    self.read_map(domain)
                except Exception:  # never let the thread die: the map keeps its last reading
                    log.exception("reading the %s map failed", domain)
            self._map_wake.wait(self.MAP_INTERVAL_S)
            self._map_wake.clear()

    def read_map(self, domain: str) -> MapReading:
        """Read the domain's latest transactions and score them with its live champion (ui/risk.py)."""
        from ui.risk import ChampionRisk

        client = state_reader.redis_client(self.settings)
        try:
            transactions = state_reader.recent_transactions(client, domain)
        except state_reader.StateUnavailable:
            return self._maps.get(domain) or MapReading()
        scorer = self._scorers.get(domain)
        if scorer is None:
            scorer = self._scorers[domain] = ChampionRisk(state_reader.redis_client(self.settings, timeout=5.0), domain)
        risks = scorer.score([t["event"] for t in transactions])
        for row, risk in zip(transactions, risks, strict=True):
            row["risk"] = risk
        reading = MapReading(transactions, scorer.model, scorer.events_learned, scorer.problem)
        self._maps[domain] = reading  # one assignment: the model loop hands over the whole reading
        return reading

    def _add_transactions(self, client: Any, live: DomainLive, now: float) -> None:
        """The map thread's latest reading (the same list object until it reads again)."""
        reading = self._maps.get(live.domain)
        if reading is None:
            return
        live.transactions = reading.transactions
        live.risk_model, live.risk_events_learned, live.risk_problem = (
            reading.model,
            reading.events_learned,
            reading.problem,
        )

    def _add_model_rates(self, live: DomainLive, now: float) -> None:
        """Mark each model row LIVE (learning) when its events learned grew in the last 5 s."""
        for row in live.models:
            samples = self._model_rates.setdefault((live.domain, row["name"]), deque(maxlen=10))
            if row.get("events_learned") is not None:
                samples.append((now, row["events_learned"]))
            recent = [n for t, n in samples if now - t <= 5.0]
            row["learning"] = len(recent) >= 2 and recent[-1] > recent[0] and not live.paused
            row["paused"] = bool(live.paused)

    def _add_rate(self, live: DomainLive, now: float) -> None:
        samples = self._rates[live.domain]
        if live.events_learned is not None:
            samples.append((now, live.events_learned))
        recent = [(t, n) for t, n in samples if now - t <= 10.0]
        if len(recent) >= 2 and recent[-1][0] > recent[0][0]:
            live.learned_per_s = max(0.0, (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0]))
        last_five = [(t, n) for t, n in samples if now - t <= 5.0]
        live.learning = len(last_five) >= 2 and last_five[-1][1] > last_five[0][1] and not live.paused
        live.arriving_per_s = self._per_second(self._arrivals[live.domain], now, live.log_head)

    @staticmethod
    def _per_second(samples: deque[tuple[float, int]], now: float, value: int | None, window: float = 10.0) -> float:
        """How fast a counter grew over the last `window` seconds, with a new sample of it (None: no reading)."""
        if value is not None:
            samples.append((now, value))
        recent = [(t, n) for t, n in samples if now - t <= window]
        if len(recent) < 2 or recent[-1][0] <= recent[0][0]:
            return 0.0
        return max(0.0, (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0]))

    # --- what pages read -----------------------------------------------------------------------------
    def down_services(self) -> list[ServiceStatus]:
        down = [s for s in self.services if s.expected and not s.healthy]
        if not self.redis_up and not any(s.name == "redis" for s in down):
            down.insert(0, ServiceStatus("redis", "Redis", self.settings.redis_url, False, True))
        return down
