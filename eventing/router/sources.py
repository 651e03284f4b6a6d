"""Event sources: a KafkaSource turns topic records into CloudEvents; a PingSource emits on a cron schedule."""

from __future__ import annotations

import base64
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from eventing.router.consumer import CommittingConsumer, Done
from eventing.router.cron import CronSchedule
from eventing.router.dispatcher import dead_letter
from eventing.router.event import WireEvent, from_kafka_record
from eventing.router.manifests import KafkaSource, PingSource
from eventing.router.metrics import RouterMetrics
from eventing.router.sinks import Sink

log = logging.getLogger(__name__)

PING_TYPE = "dev.knative.sources.ping"


class KafkaSourceAdapter:
    """Consumes the source's topics with its consumer group; commits a record once its event is in the sink."""

    def __init__(
        self,
        source: KafkaSource,
        sink: Sink,
        bootstrap: str,
        metrics: RouterMetrics,
        dead_letter_sink: Sink | None = None,
        max_inflight: int = 2000,
    ):
        self.source = source
        self.sink = sink
        self.dead_letter_sink = dead_letter_sink
        self._in = metrics.events_in.labels(source.name)
        self.consumer = CommittingConsumer(
            name=f"kafkasource-{source.name}",
            bootstrap=bootstrap,
            group=source.consumer_group,
            topics=list(source.topics),
            handler=self.handle,
            metrics=metrics,
            initial_offset=source.initial_offset,
            poison=self.poison,
            max_inflight=max_inflight,
        )

    def handle(self, record: Any, done: Done) -> None:
        event = from_kafka_record(
            namespace=self.source.namespace,
            source_name=self.source.name,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp,
            key=record.key,
            headers=record.headers,
            value=record.value,
        )
        if self.source.ce_extensions:
            event = event.with_extensions(self.source.ce_extensions)
        self._in.inc()
        self.sink.send(event, done)

    def poison(self, record: Any, reason: str, done: Done) -> None:
        """A record that cannot become an event goes to the source's `delivery.deadLetterSink` with the reason."""
        source = f"/apis/v1/namespaces/{self.source.namespace}/kafkasources/{self.source.name}"
        dead_letter(record, reason, done, self.dead_letter_sink, source, f"kafka://{record.topic}")

    def start(self) -> None:
        self.consumer.start()

    def stop(self) -> None:
        self.consumer.stop()


def ping_event(source: PingSource, when: datetime) -> WireEvent:
    """The event a Knative PingSource sends at `when`."""
    attributes = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": f"/apis/v1/namespaces/{source.namespace}/pingsources/{source.name}",
        "type": PING_TYPE,
        "time": when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    data = base64.b64decode(source.data_base64) if source.data_base64 else source.data.encode()
    if data:
        attributes["datacontenttype"] = source.content_type or "application/json"
    return WireEvent(attributes, data)


class PingSourceRunner:
    """Sends the PingSource's event to its sink at every time its schedule selects (in its timezone)."""

    def __init__(
        self, source: PingSource, sink: Sink, metrics: RouterMetrics, clock: Callable[[Any], datetime] = datetime.now
    ):
        self.source = source
        self.sink = sink
        self.clock = clock
        self.schedule = CronSchedule(source.schedule)
        self.zone = ZoneInfo(source.timezone) if source.timezone else UTC
        self._in = metrics.events_in.labels(source.name)
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ping-{source.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self._thread.join(2)

    def _run(self) -> None:
        while not self.stopping.is_set():
            now = self.clock(self.zone)
            due = self.schedule.next_after(now.replace(tzinfo=None)).replace(tzinfo=self.zone)
            if self.stopping.wait(max(0.0, (due - self.clock(self.zone)).total_seconds())):
                return
            self._in.inc()
            self.sink.send(ping_event(self.source, due), lambda: None)
