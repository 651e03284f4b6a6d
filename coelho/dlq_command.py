"""`coelho dlq list|replay`: the dead-lettered events, and re-driving them to the Broker once the cause is fixed.

The Broker, the Triggers and the KafkaSources send what they cannot deliver to the `dead-letters` KafkaSink
(knative/eventing/broker.yaml: topic `coelho-dead-letters`), in Kafka binary content mode, with the extensions
Knative's dispatcher adds: `knativeerrordest` (where delivery failed), `knativeerrorcode` (the last HTTP status)
and `knativeerrordata` (base64 of the response body, or of the router's reason).

`replay` POSTs each dead letter, without those extensions and with the same CloudEvent id, to the Broker ingress,
then records its (partition, offset) in Redis (`coelho:dlq:replayed`), so a second replay re-drives nothing. A
crash between the POST and the record re-drives that one event again on the next run: the same id, which learn-one
takes for a duplicate (docs/adr/0031), so the event is still learned exactly once. A replayed event carries the
extension `coelhoreplayof` (the dead letter it re-drives): if it is dead-lettered again (the cause is not fixed),
that new dead letter is replayed only when asked for by id (`--id`) or with `--again`, so running `replay` twice
re-drives nothing the second time.

    coelho dlq list [--json]
    coelho dlq replay [--type TYPE] [--id ID] [--dry-run]
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import click

DEAD_LETTER_TOPIC = "coelho-dead-letters"
REPLAYED_KEY = "coelho:dlq:replayed"
REPLAY_OF = "coelhoreplayof"


@dataclass
class DeadLetter:
    partition: int
    offset: int
    id: str
    type: str
    source: str
    time: str
    reason: str
    code: str | None
    destination: str | None
    attributes: dict[str, str]
    data: bytes

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"

    def replayable(self) -> bool:
        return "specversion" in self.attributes and "id" in self.attributes

    @property
    def failed_replay(self) -> bool:
        """This dead letter is an earlier replay that failed again."""
        return REPLAY_OF in self.attributes

    def to_json(self, replayed: dict[str, Any] | None = None) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("data")
        doc.pop("attributes")
        doc["ref"] = self.ref
        doc["replayable"] = self.replayable()
        doc["failed_replay"] = self.failed_replay
        doc["replayed"] = replayed
        return doc


def decode_reason(raw: str | None) -> str:
    """knativeerrordata is base64 of the subscriber's answer or the router's reason.

    >>> decode_reason("bm90IFVURi04")
    'not UTF-8'
    >>> decode_reason(None)
    ''
    """
    if not raw:
        return ""
    try:
        return base64.b64decode(raw, validate=True).decode(errors="replace").strip()
    except (binascii.Error, ValueError):
        return raw


def parse_dead_letter(
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    key: bytes | None,
    headers: Iterable[tuple[str, bytes]],
    value: bytes | None,
) -> DeadLetter:
    """One record of the dead-letter topic (binary content mode, headers decoded leniently)."""
    attributes: dict[str, str] = {}
    for name, raw in headers or ():
        text = raw.decode(errors="backslashreplace") if raw is not None else ""
        lname = name.lower()
        if lname.startswith("ce_"):
            attributes[lname[3:]] = text
        elif lname == "content-type":
            attributes["datacontenttype"] = text
    if key is not None and "partitionkey" not in attributes:
        attributes["partitionkey"] = key.decode(errors="replace")
    when = attributes.get("time") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((timestamp_ms or 0) / 1000))
    return DeadLetter(
        partition=partition,
        offset=offset,
        id=attributes.get("id", f"partition:{partition}/offset:{offset}"),
        type=attributes.get("type", "?"),
        source=attributes.get("source", "?"),
        time=when,
        reason=decode_reason(attributes.get("knativeerrordata")),
        code=attributes.get("knativeerrorcode"),
        destination=attributes.get("knativeerrordest"),
        attributes=attributes,
        data=value or b"",
    )


def read_dead_letters(bootstrap: str, topic: str = DEAD_LETTER_TOPIC, idle: float = 3.0) -> list[DeadLetter]:
    """Every record of the dead-letter topic, oldest first per partition (read until `idle` seconds bring nothing:
    the embedded broker's end offsets are not reliable)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return []
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        out: list[DeadLetter] = []
        last = time.monotonic()
        while time.monotonic() - last < idle:
            batch = consumer.poll(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    out.append(parse_dead_letter(r.partition, r.offset, r.timestamp, r.key, r.headers, r.value))
                    last = time.monotonic()
        return sorted(out, key=lambda d: (d.time, d.partition, d.offset))
    finally:
        consumer.close()


def replayed_refs(client: Any) -> dict[str, dict[str, Any]]:
    return {(k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in client.hgetall(REPLAYED_KEY).items()}


def replay_one(letter: DeadLetter, ingress: str, client: Any) -> int:
    """POST the event (its own id, without the knativeerror* extensions) to the Broker; record it once accepted."""
    import requests

    from eventing.router.event import WireEvent

    attributes = {k: v for k, v in letter.attributes.items() if not k.startswith("knativeerror")}
    attributes[REPLAY_OF] = letter.ref
    event = WireEvent(attributes, letter.data)
    response = requests.post(ingress, data=letter.data, headers=event.http_headers(), timeout=30)
    if response.status_code == 202:
        client.hset(
            REPLAYED_KEY, letter.ref, json.dumps({"at": time.time(), "id": letter.id, "status": response.status_code})
        )
    return response.status_code


@click.group()
def dlq() -> None:
    """The dead-lettered events: list them, and replay them to the Broker once the cause is fixed (exactly once)."""


def _settings() -> Any:
    from coelho.settings import Settings

    return Settings.load()


def _load(idle: float) -> tuple[Any, list[DeadLetter], dict[str, dict[str, Any]]]:
    import redis
    from kafka.errors import KafkaError

    from functions.model_state.keys import connect

    s = _settings()
    try:
        letters = read_dead_letters(s.kafka_bootstrap, idle=idle)
        client = connect(s.redis_url)
        done = replayed_refs(client)
    except (KafkaError, redis.ConnectionError, OSError) as exc:
        raise click.ClickException(f"the platform is not reachable ({exc}): is it running? (coelho up)") from None
    return client, letters, done


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.option("--idle", default=3.0, show_default=True, help="seconds without a new record that end the read")
def dlq_list(as_json: bool, idle: float) -> None:
    """Every dead letter: when, type, id, why (HTTP status and answer, or the router's reason), replayed or not."""
    _, letters, done = _load(idle)
    if as_json:
        click.echo(json.dumps({"dead_letters": [d.to_json(done.get(d.ref)) for d in letters]}))
        return
    if not letters:
        click.echo(f"no dead letters (topic {DEAD_LETTER_TOPIC})")
        return
    for d in letters:
        state = "replayed" if d.ref in done else ("failed again" if d.failed_replay else "pending")
        why = f"{d.code} " if d.code else ""
        click.echo(f"{d.time}  {d.type:<40} {d.id:<38} {state:<14} {why}{d.reason[:120]}")
    pending = sum(1 for d in letters if d.ref not in done and d.replayable() and not d.failed_replay)
    click.echo(f"{len(letters)} dead letters, {pending} to replay (`coelho dlq replay`)")


@dlq.command("replay")
@click.option("--type", "ce_type", default=None, help="only events of this CloudEvent type")
@click.option("--id", "ce_id", default=None, help="only the event with this CloudEvent id")
@click.option("--again", is_flag=True, help="also the dead letters of earlier replays that failed again")
@click.option("--dry-run", is_flag=True, help="say what would be replayed, send nothing")
@click.option("--idle", default=3.0, show_default=True, help="seconds without a new record that end the read")
def dlq_replay(ce_type: str | None, ce_id: str | None, again: bool, dry_run: bool, idle: float) -> None:
    """Re-drive the dead letters not replayed yet to the Broker (same CloudEvent ids: learn-one drops duplicates)."""
    client, letters, done = _load(idle)
    s = _settings()
    ingress = f"{s.broker_url}/{s.namespace}/default"
    pending = [d for d in letters if d.ref not in done]
    chosen = [
        d
        for d in pending
        if (ce_type is None or d.type == ce_type)
        and (ce_id is None or d.id == ce_id)
        and (again or ce_id is not None or not d.failed_replay)
    ]
    todo = [d for d in chosen if d.replayable()]
    counts = {
        "replayed": 0,
        "refused": 0,
        "already_replayed": len(letters) - len(pending),
        "failed_replays_left": sum(1 for d in pending if d.failed_replay and d not in chosen),
        "not_replayable": len(chosen) - len(todo),
    }
    for d in todo:
        if dry_run:
            click.echo(f"would replay {d.type} {d.id} ({d.reason[:80]})")
            continue
        try:
            status = replay_one(d, ingress, client)
        except OSError as exc:
            raise click.ClickException(f"the Broker ingress {ingress} is not reachable ({exc})") from None
        if status == 202:
            counts["replayed"] += 1
        else:
            counts["refused"] += 1
            click.echo(f"the Broker refused {d.id}: HTTP {status}", err=True)
    click.echo(json.dumps({"dry_run": dry_run, "to_replay": len(todo), **counts}))
    if counts["refused"]:
        raise SystemExit(1)
