"""The router's pure parts: cron schedules, durations and backoff, filters, offset tracking, event conversion,
PingSource events, and loading the real knative/ manifests."""

from __future__ import annotations

import doctest
import threading
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import eventing.router.consumer
import eventing.router.cron
import eventing.router.delivery
import eventing.router.event
import eventing.router.filters
import eventing.router.manifests
from coelho.settings import PROJECT_ROOT, Settings
from eventing.router.cron import CronSchedule
from eventing.router.delivery import HttpSender, deliver, is_retryable
from eventing.router.event import InvalidEvent, WireEvent, from_kafka_record
from eventing.router.filters import compile_dialect, compile_filter
from eventing.router.manifests import DeliverySpec, ManifestError, Manifests, parse_duration
from eventing.router.producer import ProducerReplacing, RecoveringProducer
from eventing.router.router import Router
from eventing.router.sources import ping_event
from eventing.router.testing import RecordingSubscriber
from tests.waiting import until


@pytest.mark.parametrize(
    "module",
    [
        eventing.router.consumer,
        eventing.router.cron,
        eventing.router.delivery,
        eventing.router.event,
        eventing.router.filters,
        eventing.router.manifests,
    ],
)
def test_doctests(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.failed == 0 and result.attempted > 0


# --- cron ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "expr,after,expected",
    [
        ("*/5 * * * *", datetime(2026, 1, 1, 10, 4, 59), datetime(2026, 1, 1, 10, 5)),
        ("*/5 * * * *", datetime(2026, 1, 1, 10, 5, 0), datetime(2026, 1, 1, 10, 10)),
        ("0 * * * *", datetime(2026, 1, 1, 10, 5), datetime(2026, 1, 1, 11, 0)),
        ("30 2 * * *", datetime(2026, 1, 1, 3, 0), datetime(2026, 1, 2, 2, 30)),
        ("0 0 1 * *", datetime(2026, 1, 15), datetime(2026, 2, 1)),
        ("0 9 * * 1-5", datetime(2026, 1, 2, 10, 0), datetime(2026, 1, 5, 9, 0)),  # Fri 10:00 -> Mon 09:00
        ("15,45 * * * *", datetime(2026, 1, 1, 10, 20), datetime(2026, 1, 1, 10, 45)),
        ("@hourly", datetime(2026, 1, 1, 10, 20), datetime(2026, 1, 1, 11, 0)),
        ("0 0 * * 7", datetime(2026, 1, 1), datetime(2026, 1, 4)),  # 7 is Sunday too
    ],
)
def test_cron_next_after(expr: str, after: datetime, expected: datetime) -> None:
    assert CronSchedule(expr).next_after(after) == expected


@pytest.mark.parametrize("expr", ["* * * *", "61 * * * *", "*/0 * * * *", "a * * * *"])
def test_cron_rejects_bad_schedules(expr: str) -> None:
    with pytest.raises(ManifestError):
        CronSchedule(expr)


def test_ping_event_is_what_a_pingsource_sends() -> None:
    m = Manifests.load(PROJECT_ROOT / "knative")
    source = m.ping_sources[("coelho", "coelho-checkpoint-schedule")]
    event = ping_event(source, datetime(2026, 1, 1, 10, 5, tzinfo=ZoneInfo("Etc/UTC")))
    assert event.attributes["type"] == "dev.knative.sources.ping"
    assert event.attributes["source"] == "/apis/v1/namespaces/coelho/pingsources/coelho-checkpoint-schedule"
    assert event.attributes["time"] == "2026-01-01T10:05:00.000Z"
    assert event.attributes["datacontenttype"] == "application/json"
    assert event.data == b'{"reason": "schedule"}'


# --- durations, backoff, retryable statuses ---------------------------------------------------------------
def test_backoff_policies() -> None:
    linear = DeliverySpec(retry=3, backoff_policy="linear", backoff_delay=0.2)
    exponential = DeliverySpec(retry=3, backoff_policy="exponential", backoff_delay=0.2)
    assert [linear.backoff(n) for n in (1, 2, 3)] == pytest.approx([0.2, 0.4, 0.6])
    assert [exponential.backoff(n) for n in (1, 2, 3)] == pytest.approx([0.4, 0.8, 1.6])
    assert parse_duration("PT1.5S") == 1.5
    with pytest.raises(ManifestError):
        parse_duration("1s")


@pytest.mark.parametrize(
    "status,retry",
    [
        (500, True),
        (503, True),
        (404, True),
        (408, True),
        (409, True),
        (429, True),
        (None, True),
        (400, False),
        (401, False),
        (403, False),
        (410, False),
        (422, False),
    ],
)
def test_only_knatives_retryable_statuses_are_retried(status: int | None, retry: bool) -> None:
    assert is_retryable(status) is retry


def test_delivery_retries_a_429_then_succeeds_and_stops_on_422() -> None:
    answers = iter([429, 200])
    sub = RecordingSubscriber(responder=lambda _g: (next(answers), {}, b""))
    spec = DeliverySpec(retry=3, backoff_policy="linear", backoff_delay=0.01)
    event = WireEvent({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}, b"{}")
    try:
        outcome = deliver(event, sub.url, spec, HttpSender(5), threading.Event())
        assert outcome.delivered and outcome.attempts == 2
        sub.responder = lambda _g: (422, {}, b"unprocessable")
        outcome = deliver(event, sub.url, spec, HttpSender(5), threading.Event())
        assert not outcome.delivered and outcome.attempts == 1 and outcome.status == 422
        ext = outcome.dead_letter_extensions(sub.url)
        assert ext["knativeerrorcode"] == "422" and ext["knativeerrordest"] == sub.url
    finally:
        sub.stop()


def test_delivery_to_nobody_is_a_network_error_that_is_retried() -> None:
    spec = DeliverySpec(retry=2, backoff_policy="linear", backoff_delay=0.01)
    event = WireEvent({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}, b"")
    from coelho.settings import free_port

    outcome = deliver(event, f"http://127.0.0.1:{free_port()}/", spec, HttpSender(2), threading.Event())
    assert not outcome.delivered and outcome.status is None and outcome.attempts == 3
    assert "knativeerrorcode" not in outcome.dead_letter_extensions("x")


# --- filters ------------------------------------------------------------------------------------------------
def test_attribute_filter_empty_value_matches_anything_and_missing_attribute_never_matches_exact() -> None:
    match = compile_filter({"type": "t", "domain": ""}, None)
    assert match({"type": "t"}) and not match({"type": "u"})
    assert not compile_dialect({"exact": {"domain": "tfd"}})({"type": "t"})
    assert not compile_dialect({"prefix": {"domain": "t"}})({"type": "t"})


def test_filters_take_precedence_over_filter_attributes() -> None:
    match = compile_filter({"type": "ignored"}, [{"exact": {"type": "used"}}])
    assert match({"type": "used"}) and not match({"type": "ignored"})


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"exact": {}},
        {"exact": {"a": "b"}, "prefix": {"a": "b"}},
        {"cesql": "a = 'b'"},
        {"any": "not-a-list"},
        {"unknown": {"a": "b"}},
    ],
)
def test_bad_filters_are_rejected_at_load(bad: dict) -> None:
    with pytest.raises(ManifestError):
        compile_dialect(bad)


# --- offsets ------------------------------------------------------------------------------------------------
def test_commit_point_moves_only_over_a_finished_prefix() -> None:
    from eventing.router.consumer import OffsetTracker

    t = OffsetTracker()
    for offset in range(10, 15):
        t.add(offset)
    assert t.done(12) is None and t.done(11) is None
    assert t.done(10) == 13  # 10, 11, 12 done: commit 13
    assert t.done(14) is None and t.done(13) == 15


# --- events -------------------------------------------------------------------------------------------------
def test_http_binary_mode_percent_encodes_only_what_the_spec_requires() -> None:
    e = WireEvent({"specversion": "1.0", "id": "1", "source": "/a/b:c", "type": "t", "subject": 'é "x"%'}, b"")
    h = e.http_headers()
    assert h["ce-source"] == "/a/b:c"
    assert h["ce-subject"] == "%C3%A9%20%22x%22%25"
    back = WireEvent.from_http(h, b"")
    assert back.attributes["subject"] == 'é "x"%'


def test_from_http_keeps_only_the_attributes_that_were_sent() -> None:
    e = WireEvent.from_http({"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}, b"")
    assert set(e.attributes) == {"specversion", "id", "source", "type"}
    with pytest.raises(InvalidEvent, match="id"):
        WireEvent.from_http({"ce-specversion": "1.0", "ce-source": "/s", "ce-type": "t"}, b"")


def test_a_record_without_key_or_headers() -> None:
    e = from_kafka_record(
        namespace="ns",
        source_name="s",
        topic="t",
        partition=0,
        offset=5,
        timestamp_ms=0,
        key=None,
        headers=None,
        value=b"raw",
    )
    assert "partitionkey" not in e.attributes and "key" not in e.attributes
    assert e.attributes["time"] == "1970-01-01T00:00:00.000Z" and e.data == b"raw"


def test_a_structured_cloudevent_record_passes_through() -> None:
    value = b'{"specversion": "1.0", "id": "s1", "source": "/p", "type": "x.y", "data": {"a": 1}}'
    e = from_kafka_record(
        namespace="ns",
        source_name="s",
        topic="t",
        partition=0,
        offset=5,
        timestamp_ms=0,
        key=b"k",
        headers=[("content-type", b"application/cloudevents+json")],
        value=value,
    )
    assert (e.attributes["id"], e.attributes["type"]) == ("s1", "x.y")


# --- the real manifests -------------------------------------------------------------------------------------
def test_the_real_manifests_load_and_resolve_to_local_ports(tmp_path: object) -> None:
    settings = Settings()
    router = Router(settings, manifests_dir=PROJECT_ROOT / "knative", serve_metrics=False)
    m = router.manifests
    assert ("coelho", "default") in m.brokers and len(m.kafka_sources) == 3
    assert {p.name for p in m.ping_sources.values()} == {
        "coelho-checkpoint-schedule",
        "coelho-lake-maintenance-schedule",
    }
    for trigger in m.triggers.values():
        url = router.resolve_url(trigger.subscriber)
        if trigger.subscriber.kind == "JobSink":  # the router's own runner of the Job: a local process per event
            job_sink = router.job_sinks[(str(trigger.subscriber.namespace), str(trigger.subscriber.name))]
            assert url == job_sink.url and url.startswith(f"http://{settings.host}:")
            job_sink.stop()
            continue
        # learn-one is one Service per domain (coelho-learn-tfd, ...), served locally by the one learn process.
        port_name = str(trigger.subscriber.name).removeprefix("coelho-")
        port_name = port_name if port_name in settings.ports else port_name.rsplit("-", 1)[0]
        path = trigger.subscriber.uri or "/"  # the learn Triggers add `/?reply=none` (ADR 0076)
        assert url == f"http://127.0.0.1:{settings.ports[port_name]}{path}"
    ordered = {t.name for t in m.triggers.values() if t.ordered}
    assert "tfd-learn-records" in ordered and "tfd-predict" not in ordered


def test_a_subscriber_override_wins(tmp_path: object) -> None:
    router = Router(
        Settings(),
        manifests_dir=PROJECT_ROOT / "knative",
        subscribers={"coelho-learn": "http://x:1/"},
        serve_metrics=False,
    )
    trigger = router.manifests.triggers[("coelho", "tfd-learn-records")]
    assert router.resolve_url(trigger.subscriber) == "http://x:1/?reply=none"  # the override is the ref's address
    predict = router.manifests.triggers[("coelho", "tfd-predict")]
    assert router.resolve_url(predict.subscriber) == f"http://127.0.0.1:{Settings().ports['predict']}/"


class ListSink:
    """A sink that keeps what it is sent, and says when the first event came."""

    address = "list://"

    def __init__(self) -> None:
        self.sent: list[WireEvent] = []
        self.fired = threading.Event()

    def send(self, event: WireEvent, on_done: object) -> None:
        self.sent.append(event)
        self.fired.set()


def test_ping_source_runner_sends_its_data_when_the_schedule_fires() -> None:
    from datetime import timedelta

    from eventing.router.metrics import RouterMetrics
    from eventing.router.sources import PingSourceRunner

    source = Manifests.load(PROJECT_ROOT / "knative").ping_sources[("coelho", "coelho-checkpoint-schedule")]
    # A clock 0.2 s before 10:05 (due: */5), running at real speed from there.
    start_real = datetime.now(ZoneInfo("Etc/UTC"))
    start_fake = datetime(2026, 1, 1, 10, 4, 59, 800000, tzinfo=ZoneInfo("Etc/UTC"))

    def clock(zone: object) -> datetime:
        return start_fake + (datetime.now(ZoneInfo("Etc/UTC")) - start_real)

    sink = ListSink()
    sent = sink.sent
    metrics = RouterMetrics()
    runner = PingSourceRunner(source, sink, metrics, clock=clock)
    runner.start()
    try:
        assert sink.fired.wait(5), "the 10:05 ping did not fire"
    finally:
        runner.stop()
    assert len(sent) == 1
    assert sent[0].attributes["time"] == "2026-01-01T10:05:00.000Z"
    assert sent[0].data == b'{"reason": "schedule"}'
    assert metrics.registry.get_sample_value("coelho_router_events_in_total", {"source": source.name}) == 1
    assert clock(None) - start_fake < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("zone", "expected"),
    [("America/Sao_Paulo", "2026-01-01T13:00:00.000Z"), ("Asia/Kolkata", "2026-01-01T04:30:00.000Z")],
)
def test_a_ping_source_fires_at_its_schedule_in_its_own_timezone(zone: str, expected: str) -> None:
    """`spec.timezone`: "0 10 * * *" in São Paulo (UTC-3) is 13:00 UTC, in Kolkata (UTC+5:30) 04:30 UTC."""
    from dataclasses import replace
    from datetime import timedelta

    from eventing.router.metrics import RouterMetrics
    from eventing.router.sources import PingSourceRunner

    checkpoint = Manifests.load(PROJECT_ROOT / "knative").ping_sources[("coelho", "coelho-checkpoint-schedule")]
    source = replace(checkpoint, schedule="0 10 * * *", timezone=zone)
    due_utc = datetime.fromisoformat(expected.replace("Z", "+00:00"))
    start_real = datetime.now(ZoneInfo("Etc/UTC"))
    start_fake = due_utc - timedelta(seconds=0.2)  # 0.2 s before the local 10:00, running at real speed

    def clock(tz: ZoneInfo) -> datetime:
        return (start_fake + (datetime.now(ZoneInfo("Etc/UTC")) - start_real)).astimezone(tz)

    sink = ListSink()
    runner = PingSourceRunner(source, sink, RouterMetrics(), clock=clock)
    runner.start()
    try:
        assert sink.fired.wait(5), f"the 10:00 {zone} ping did not fire within 5 s of {expected}"
    finally:
        runner.stop()
    assert [e.attributes["time"] for e in sink.sent] == [expected]


def test_a_send_while_the_replacement_is_made_fails_at_once() -> None:
    """A fatal kafka-python producer's send waits up to max_block_ms (60 s) for metadata it never gets: while the
    new producer is being made, a send is refused at once (the ingress answers 503, a sink retries)."""
    release = threading.Event()

    class Fake:
        def __init__(self) -> None:
            self.fatal, self.sent = False, 0

        def send(self, topic: str, **kwargs: Any) -> str:
            assert not self.fatal, "a send reached the fatal producer"
            self.sent += 1
            return "future"

        def close(self, timeout: float | None = None) -> None:
            pass

    made: list[Fake] = []

    def factory() -> Fake:
        if made:
            release.wait(10)  # the broker is slow to answer the new producer
        made.append(Fake())
        return made[-1]

    producer = RecoveringProducer(factory, is_fatal=lambda p: p.fatal, min_interval=0.0)
    made[0].fatal = True
    with pytest.raises(ProducerReplacing) as refused:
        producer.send("t", key=None, value=b"1", headers=[])
    assert refused.value.retriable
    release.set()
    until(lambda: producer.replaced == 1)
    assert producer.send("t", key=None, value=b"2", headers=[]) == "future" and made[1].sent == 1


def test_a_group_join_that_never_ends_is_given_up_and_a_new_consumer_joins(monkeypatch: pytest.MonkeyPatch) -> None:
    """kafka-python was seen waiting for good on a SyncGroup answer after the broker's store came back: the consumer
    polled nothing while records piled up. A (re)join without an assignment after REJOIN_STALL_S starts a new
    consumer from the committed offsets."""
    import eventing.router.consumer as consumer_module
    from eventing.router.consumer import CommittingConsumer
    from eventing.router.metrics import RouterMetrics

    made: list[Any] = []

    class StuckThenFine:
        """The first one never finishes joining; the next one is assigned its partitions at its first poll."""

        def __init__(self, **config: Any) -> None:
            self.joins, self.closed, self.listener = len(made) > 0, False, None
            made.append(self)

        def subscribe(self, topics: list[str], listener: Any) -> None:
            self.listener = listener

        def poll(self, timeout_ms: int = 0) -> dict[Any, Any]:
            if self.joins and self.listener is not None:
                self.listener.on_partitions_assigned(set())  # (a member may be given no partition)
                self.joins = False
            time.sleep(0.01)
            return {}

        def assignment(self) -> set[Any]:
            return set()

        def commit(self, offsets: Any) -> None:
            pass

        def close(self, autocommit: bool = False, timeout_ms: int = 0) -> None:
            self.closed = True

    monkeypatch.setattr(consumer_module, "KafkaConsumer", StuckThenFine)
    monkeypatch.setattr(consumer_module, "REJOIN_STALL_S", 0.3)
    monkeypatch.setattr(consumer_module, "RESTART_DELAY_S", 0.01)
    consumer = CommittingConsumer("t", "127.0.0.1:1", "g", ["topic"], lambda record, done: done(), RouterMetrics())
    consumer.start()
    try:
        until(lambda: len(made) >= 2 and made[1].listener is not None and not made[1].joins, timeout=10)
        time.sleep(0.6)  # the second consumer joined: it is kept, however long it stays idle
        assert consumer.restarts == 1 and made[0].closed and not made[1].closed and len(made) == 2
    finally:
        consumer.stop(5)
