"""Send a domain's stream (generated or replayed) to its Kafka topic at a controlled rate.

`produce("tfd", rate=3)` runs until stopped; `count` or `duration` bound it. The rate and an on/off switch can
be changed while it runs through Redis (producers.controls). Records are binary-mode CloudEvents
(producers.kafka_record) keyed by the entity key, so each key's events land on one partition, in order.

The Kafka producer favours throughput without giving up order or safety:
- acks="all" with idempotence (kafka-python 3's defaults): on one broker it costs nothing measurable over
  acks=1 (bench/producers.py shows both), and on a replicated cluster a leader failover loses nothing while
  retries keep each partition's order (idempotent sequence numbers).
- linger_ms=20 and 512 KB batches: at thousands of events per second each partition's batch gathers tens of
  records per request (the sender thread's per-request work, not the records, is what costs CPU in
  kafka-python: 5 ms lingers cost ~20% more CPU per event than 200 ms ones); at a few events per second,
  20 ms of added latency is invisible.
- lz4 compression: JSON compresses 3-4x, for little CPU.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import IO, Any

from eventing.domains import get_domain
from producers.controls import ProducerControls
from producers.generators import StreamGenerator, make_generator
from producers.generators.base import GeneratedEvent
from producers.kafka_record import ensure_topic, to_cloudevent, to_kafka_message
from producers.metrics import ProducerMetrics
from producers.replay import InvalidLine, replay_events

log = logging.getLogger(__name__)

PRODUCER_CONFIG: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 20,
    "batch_size": 512 * 1024,
    "compression_type": "lz4",
}


STOP_FLUSH_S = 3.0  # on stop: how long to wait for Kafka to acknowledge what was sent


@dataclass
class ProduceStats:
    """What a run did: events handed to the sink, acknowledged, failed, and for how long."""

    domain: str
    sent: int = 0
    acknowledged: int = 0
    errors: int = 0
    seconds: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def events_per_second(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


class Pacer:
    """Spaces events at `rate` per second (0 = no pause) against an absolute schedule, so sleeps that overshoot
    are caught up; after a pause or when far behind it restarts the schedule instead of bursting."""

    def __init__(self, rate: float) -> None:
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        self.t0 = time.monotonic()
        self.n = 0

    def wait(self, stop: threading.Event) -> None:
        if self.rate <= 0:
            return
        self.n += 1
        delay = self.t0 + self.n / self.rate - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        elif delay < -1.0:
            self.set_rate(self.rate)


class KafkaSink:
    """kafka-python producer writing CloudEvent records to the domain's topic."""

    def __init__(
        self,
        domain: str,
        bootstrap_servers: str,
        partitions: int = 6,
        replication_factor: int = 1,
        config: dict[str, Any] | None = None,
    ) -> None:
        from kafka import KafkaProducer

        self.domain = get_domain(domain)
        self.topic = self.domain.topic
        ensure_topic(bootstrap_servers, self.topic, partitions, replication_factor)
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=f"coelho-producer-{self.domain.name}",
            **{**PRODUCER_CONFIG, **(config or {})},
        )
        self.acknowledged = 0
        self.errors = 0

    # Delivery callbacks run on kafka-python's sender thread: plain counters there, published to Prometheus by
    # the produce loop about once per second (a Counter.inc per record costs a lock on that busy thread).
    def _ok(self, _metadata: Any) -> None:
        self.acknowledged += 1

    def _failed(self, err: BaseException) -> None:
        self.errors += 1
        log.error("producer %s: a record was not delivered: %s", self.domain.name, err)

    def send(self, event: GeneratedEvent) -> None:
        message = to_kafka_message(self.domain.name, event)
        future = self.producer.send(
            self.topic, key=message.key, value=message.value, headers=list(message.headers.items())
        )
        future.add_callback(self._ok)
        future.add_errback(self._failed)

    def flush(self, timeout: float | None = None) -> None:
        self.producer.flush(timeout)

    def close(self, timeout: float = 10.0) -> None:
        self.producer.close(timeout=timeout)


class JsonlSink:
    """Writes the stream as JSONL instead (record a stream to replay later): a record's line is its data, any
    other event (a delayed label) is a structured CloudEvent line, so `--replay` restores both."""

    def __init__(self, domain: str, output: str | Path | IO[str]) -> None:
        self.domain = get_domain(domain)
        self._own = isinstance(output, str | Path)
        if isinstance(output, str | Path):
            self.handle: IO[str] = open(output, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())
        else:
            self.handle = output
        self.acknowledged = 0
        self.errors = 0

    def send(self, event: GeneratedEvent) -> None:
        if event.kind == "record":
            line = json.dumps(event.data)
        else:
            ce = to_cloudevent(self.domain.name, event)
            attributes = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in ce.get_attributes().items()}
            line = json.dumps({**attributes, "data": event.data})
        self.handle.write(line + "\n")
        self.acknowledged += 1

    def flush(self, timeout: float | None = None) -> None:
        self.handle.flush()

    def close(self, timeout: float = 10.0) -> None:
        self.flush()
        if self._own:
            self.handle.close()


def events_of(
    domain: str,
    *,
    count: int | None = None,
    seed: int | None = None,
    start: datetime | str | float | None = None,
    drift_at: int | None = None,
    delayed_labels: bool = False,
    replay: str | Path | None = None,
    replay_errors: list[InvalidLine] | None = None,
) -> tuple[Iterator[GeneratedEvent], StreamGenerator | None]:
    """The stream to send (generated, or replayed from a JSONL file) and its generator (None for a replay)."""
    d = get_domain(domain)
    if replay is not None:
        events: Iterable[GeneratedEvent] = replay_events(d, replay, replay_errors)
        return (islice(events, count) if count is not None else iter(events)), None
    generator = make_generator(d.name, seed=seed, start=start, drift_at=drift_at, delayed_labels=delayed_labels)
    return generator.take(count), generator


def produce(
    domain: str,
    *,
    rate: float = 3.0,
    count: int | None = None,
    duration: float | None = None,
    seed: int | None = None,
    start: datetime | str | float | None = None,
    drift_at: int | None = None,
    delayed_labels: bool = False,
    replay: str | Path | None = None,
    bootstrap_servers: str | None = None,
    metrics_port: int | None = None,
    redis_url: str | None = None,
    partitions: int = 6,
    replication_factor: int = 1,
    output: str | Path | IO[str] | None = None,
    stop: threading.Event | None = None,
    producer_config: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ProduceStats:
    """Produce `domain`'s stream until `count` records, `duration` seconds, the end of a replay, or `stop`.

    rate: events/s (0 = as fast as possible), overridden while running by the Redis controls when `redis_url`
    is given. output: write JSONL there instead of Kafka. progress: called with the number of events sent after each
    one (a progress bar; it must be cheap). Returns what was sent and acknowledged.
    """
    d = get_domain(domain)
    stop = stop or threading.Event()
    metrics = ProducerMetrics(d.name)
    if metrics_port:
        metrics.serve(metrics_port)
    controls = ProducerControls(d.name, rate, redis_url)
    replay_errors: list[InvalidLine] = []
    events, generator = events_of(
        d.name,
        count=count,
        seed=seed,
        start=start,
        drift_at=drift_at,
        delayed_labels=delayed_labels,
        replay=replay,
        replay_errors=replay_errors,
    )
    sink: KafkaSink | JsonlSink
    if output is not None:
        sink = JsonlSink(d.name, output)
    else:
        if not bootstrap_servers:
            raise ValueError("bootstrap_servers is required to produce to Kafka (or give an output file)")
        sink = KafkaSink(d.name, bootstrap_servers, partitions, replication_factor, producer_config)
    if generator is not None:
        log.info("producing %s to %s at %s ev/s (seed %d)", d.name, d.topic, rate or "max", generator.seed)
    stats = ProduceStats(d.name)
    pacer = Pacer(rate)
    metrics.rate.set(rate)
    metrics.enabled.set(1)
    started = time.monotonic()
    deadline = started + duration if duration else None
    next_report = started  # controls and gauges are read before the first event, then about once per second
    published = {"acknowledged": 0, "errors": 0}

    def publish() -> None:
        """Counters of the sink and the skipped replay lines -> Prometheus."""
        acknowledged, errors = sink.acknowledged, sink.errors + len(replay_errors)
        metrics.events.inc(acknowledged - published["acknowledged"])
        metrics.errors.inc(errors - published["errors"])
        published.update(acknowledged=acknowledged, errors=errors)

    try:
        for event in events:
            now = time.monotonic()
            if now >= next_report:  # about once per second: controls, gauges, skipped replay lines
                next_report = now + 1.0
                if controls.poll(now):
                    pacer.set_rate(controls.rate)
                    metrics.rate.set(controls.rate)
                metrics.enabled.set(1 if controls.enabled else 0)
                controls.heartbeat(stats.sent, count)
                while not controls.enabled and not stop.is_set():
                    stop.wait(0.25)
                    publish()
                    controls.heartbeat(stats.sent, count)
                    if controls.poll():
                        pacer.set_rate(controls.rate)
                        metrics.rate.set(controls.rate)
                        metrics.enabled.set(1 if controls.enabled else 0)
                if generator is not None:
                    metrics.set_gauges(generator.gauges())
                publish()
            if stop.is_set() or (deadline is not None and now >= deadline):
                break
            pacer.wait(stop)
            if stop.is_set():
                break
            sink.send(event)
            stats.sent += 1
            stats.by_kind[event.kind] = stats.by_kind.get(event.kind, 0) + 1
            if progress is not None:
                progress(stats.sent)
        # Stopped (SIGTERM): flush what was sent, but within the runtime's patience (it SIGKILLs after 10 s).
        if stop.is_set():
            from kafka.errors import KafkaTimeoutError

            try:
                sink.flush(timeout=STOP_FLUSH_S)
            except KafkaTimeoutError:  # a busy broker: stop anyway; the summary shows sent vs acknowledged
                log.warning("producer %s: stopped with records not yet acknowledged after %.1f s", domain, STOP_FLUSH_S)
        else:
            sink.flush(timeout=60)
    finally:
        stats.seconds = time.monotonic() - started
        if generator is not None:
            metrics.set_gauges(generator.gauges())
        sink.close(timeout=1.0 if stop.is_set() else 10.0)
        publish()
        controls.close()
        metrics.close()
        stats.acknowledged = sink.acknowledged
        stats.errors = sink.errors + len(replay_errors)
    log.info(
        "produced %d %s events (%d acknowledged, %d errors) in %.1f s",
        stats.sent,
        d.name,
        stats.acknowledged,
        stats.errors,
        stats.seconds,
    )
    return stats
