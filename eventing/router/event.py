"""A CloudEvent as the router moves it: string attributes plus the data bytes, never re-encoded.

The router only reads attributes (to filter and order) and copies the data, so it keeps the data as the bytes
it received. Parsing and validating what clients send goes through the cloudevents SDK (`from_http`,
`from_kafka`); the copy between Kafka binary mode and HTTP binary mode is a header rename.

>>> e = WireEvent({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "partitionkey": "u1"}, b"{}")
>>> e.kafka_key, sorted(e.http_headers())[:2]
(b'u1', ['ce-id', 'ce-partitionkey'])
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat

CE_JSON = "application/cloudevents+json"
KAFKA_EVENT = "dev.knative.kafka.event"
_FORMAT = JSONFormat()
# CloudEvents HTTP binding: percent-encode space, double quote, percent and anything outside printable ASCII.
_HEADER_UNSAFE = re.compile(r"[^\x21\x23-\x24\x26-\x7e]")
# CloudEvents: attribute names are lower-case letters and digits; String values exclude the control characters
# (U+0000-U+001F, U+007F-U+009F). Checked on everything the router takes in, so no CR/LF ever reaches a header.
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class InvalidEvent(ValueError):
    """The bytes are not a valid CloudEvent; the message says why."""


def _encode_header(value: str) -> str:
    if not _HEADER_UNSAFE.search(value):
        return value
    return "".join(c if not _HEADER_UNSAFE.match(c) else "".join(f"%{b:02X}" for b in c.encode()) for c in value)


def check_attributes(attributes: Mapping[str, str], strict: bool = True) -> None:
    """Raise InvalidEvent for an attribute name or value the CloudEvents spec does not allow.

    `strict=False` (a KafkaSource converting a plain record, whose headers become extensions) checks the names
    and `datacontenttype` only: the other values travel percent-encoded and cannot break a request.

    >>> check_attributes({"id": "1", "datacontenttype": "application/json"})
    >>> try:
    ...     check_attributes({"datacontenttype": "text/plain\\r\\nX-Injected: 1"})
    ... except InvalidEvent as exc:
    ...     print(exc)
    attribute datacontenttype holds a control character (CR, LF, ...)
    """
    for name, value in attributes.items():
        if not _ATTRIBUTE_NAME.fullmatch(name):
            raise InvalidEvent(f"attribute name {name!r} is not lower-case letters and digits")
        if (strict or name == "datacontenttype") and _CONTROL.search(value):
            raise InvalidEvent(f"attribute {name} holds a control character (CR, LF, ...)")


def _decode_header(name: str, raw: bytes | None) -> str:
    if raw is None:
        return ""
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise InvalidEvent(f"Kafka header {name!r} is not UTF-8 ({exc.reason} at byte {exc.start})") from None


def _attr_str(value: Any) -> str:
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    return str(value)


@dataclass
class WireEvent:
    attributes: dict[str, str]
    data: bytes

    def get(self, name: str) -> str | None:
        return self.attributes.get(name)

    @property
    def kafka_key(self) -> bytes | None:
        key = self.attributes.get("partitionkey")
        return key.encode() if key is not None else None

    def with_extensions(self, extensions: Mapping[str, str]) -> WireEvent:
        return WireEvent({**self.attributes, **extensions}, self.data)

    # --- Kafka binary content mode -------------------------------------------------------------------
    def kafka_headers(self) -> list[tuple[str, bytes]]:
        headers = []
        for name, value in self.attributes.items():
            if name == "datacontenttype":
                headers.append(("content-type", value.encode()))
            else:
                headers.append(("ce_" + name, value.encode()))
        return headers

    # --- HTTP binary content mode --------------------------------------------------------------------
    def http_headers(self) -> dict[str, str]:
        headers = {}
        for name, value in self.attributes.items():
            if name == "datacontenttype":
                headers["Content-Type"] = value
            else:
                headers["ce-" + name] = _encode_header(value)
        return headers

    def structured(self) -> dict[str, Any]:
        """The event in the JSON format (data decoded when it is JSON, else data_base64)."""
        doc: dict[str, Any] = dict(self.attributes)
        ctype = self.attributes.get("datacontenttype", "application/json")
        if self.data:
            if "json" in ctype:
                doc["data"] = json.loads(self.data)
            elif ctype.startswith("text/"):
                doc["data"] = self.data.decode()
            else:
                doc["data_base64"] = base64.b64encode(self.data).decode()
        return doc

    # --- parsing -------------------------------------------------------------------------------------
    @classmethod
    def from_sdk(cls, event: Any, raw_data: bytes | None = None) -> WireEvent:
        attributes = {k: _attr_str(v) for k, v in event.get_attributes().items() if v is not None}
        if raw_data is None:
            data = event.get_data()
            raw_data = b"" if data is None else _FORMAT.write_data(data, attributes.get("datacontenttype"))
        return cls(attributes, raw_data)

    @classmethod
    def from_http(cls, headers: Mapping[str, str], body: bytes) -> WireEvent:
        """A CloudEvent from an HTTP request or response (binary or structured mode), or InvalidEvent."""
        lowered = {k.lower(): v for k, v in headers.items()}
        binary = any(k.startswith("ce-") for k in lowered)
        if not binary and not lowered.get("content-type", "").startswith(CE_JSON):
            raise InvalidEvent("neither ce-* headers (binary mode) nor Content-Type application/cloudevents+json")
        # The SDK fills in a missing id and time; a Broker must refuse an event without an id instead.
        if binary:
            present = {k[3:] for k in lowered if k.startswith("ce-")}
            if "content-type" in lowered:
                present.add("datacontenttype")
        else:
            try:
                doc = json.loads(body)
            except ValueError as exc:
                raise InvalidEvent(f"structured mode body is not JSON: {exc}") from exc
            if not isinstance(doc, dict):
                raise InvalidEvent("structured mode body is not a JSON object")
            present = {k for k in doc if k not in ("data", "data_base64")}
        missing = [a for a in ("specversion", "id", "source", "type") if a not in present]
        if missing:
            raise InvalidEvent(f"missing required attribute(s): {', '.join(missing)}")
        try:
            event = ce_http.from_http(ce_http.HTTPMessage(headers=lowered, body=body), _FORMAT)
        except Exception as exc:  # the SDK raises several exception types; all mean "not a valid CloudEvent"
            raise InvalidEvent(str(exc) or type(exc).__name__) from exc
        wire = cls.from_sdk(event, body if binary else None)
        wire.attributes = {k: v for k, v in wire.attributes.items() if k in present}
        check_attributes(wire.attributes)
        return wire

    @classmethod
    def from_kafka_cloudevent(
        cls, key: bytes | None, headers: Iterable[tuple[str, bytes]], value: bytes | None
    ) -> WireEvent | None:
        """The CloudEvent in a Kafka record (binary or structured mode), or None when the record is not one.

        InvalidEvent when it claims to be one but cannot be (a header that is not UTF-8, a control character in
        an attribute, a structured body that does not parse): such a record is dead-lettered with the reason.
        """
        header_list = list(headers or ())
        attributes: dict[str, str] = {}
        content_type = None
        for name, raw in header_list:
            lname = name.lower()
            if lname.startswith("ce_"):
                attributes[lname[3:]] = _decode_header(name, raw)
            elif lname == "content-type" and raw is not None:
                content_type = _decode_header(name, raw)
        if "specversion" in attributes:  # binary mode: copy without decoding the data
            if content_type is not None:
                attributes["datacontenttype"] = content_type
            if key is not None and "partitionkey" not in attributes:
                attributes["partitionkey"] = key.decode(errors="replace")
            check_attributes(attributes)
            return cls(attributes, value or b"")
        if content_type and content_type.startswith(CE_JSON):
            message = ce_kafka.KafkaMessage(headers={k: v for k, v in header_list}, key=key, value=value or b"")
            try:
                event = cls.from_sdk(ce_kafka.from_structured(message, _FORMAT))
            except Exception as exc:  # the SDK raises several exception types; all mean "not a valid CloudEvent"
                raise InvalidEvent(f"structured-mode record: {str(exc) or type(exc).__name__}") from exc
            check_attributes(event.attributes)
            return event
        return None


def kafka_time(timestamp_ms: int | None) -> str:
    """RFC 3339 time of a Kafka record timestamp (milliseconds), as Knative's KafkaSource writes it."""
    when = datetime.fromtimestamp((timestamp_ms or 0) / 1000, tz=UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_EXT_CHARS = re.compile(r"[^a-z0-9]")


def from_kafka_record(
    *,
    namespace: str,
    source_name: str,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    key: bytes | None,
    headers: Iterable[tuple[str, bytes]] | None,
    value: bytes | None,
) -> WireEvent:
    """What a Knative KafkaSource makes of a record: the CloudEvent it carries, or a dev.knative.kafka.event."""
    header_list = list(headers or ())
    carried = WireEvent.from_kafka_cloudevent(key, header_list, value)
    if carried is not None:
        return carried
    attributes = {
        "specversion": "1.0",
        "id": f"partition:{partition}/offset:{offset}",
        "source": f"/apis/v1/namespaces/{namespace}/kafkasources/{source_name}#{topic}",
        "type": KAFKA_EVENT,
        "subject": f"partition:{partition}#{offset}",
        "time": kafka_time(timestamp_ms),
    }
    for name, raw in header_list:
        if name.lower() == "content-type" and raw is not None:
            attributes["datacontenttype"] = _decode_header(name, raw)
            continue
        ext = "kafkaheader" + _EXT_CHARS.sub("", name.lower())
        attributes[ext] = raw.decode(errors="replace") if raw is not None else ""
    if key is not None:
        text = key.decode(errors="replace")
        attributes["key"] = text
        attributes["partitionkey"] = text
    attributes["knativekafkapartition"] = str(partition)
    attributes["knativekafkaoffset"] = str(offset)
    check_attributes(attributes, strict=False)
    return WireEvent(attributes, value or b"")


def poison_record_event(
    *,
    source: str,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    key: bytes | None,
    headers: Iterable[tuple[str, bytes]] | None,
    value: bytes | None,
    reason: str,
    destination: str,
) -> WireEvent:
    """A record the router cannot route, as a dead letter: the record as a dev.knative.kafka.event whose every
    header is a `kafkaheader*` extension (decoded leniently), with knativeerrordest and knativeerrordata (base64
    of the reason) as Knative's dispatcher adds them. Its data is the record's value, untouched.

    >>> e = poison_record_event(source="/s", topic="t", partition=0, offset=7, timestamp_ms=0, key=b"k",
    ...     headers=[("ce_id", b"\\xff")], value=b"{}", reason="not UTF-8", destination="kafka://t")
    >>> e.attributes["kafkaheaderceid"], base64.b64decode(e.attributes["knativeerrordata"])
    ('\\\\xff', b'not UTF-8')
    """
    attributes = {
        "specversion": "1.0",
        "id": f"partition:{partition}/offset:{offset}",
        "source": f"{source}#{topic}",
        "type": KAFKA_EVENT,
        "subject": f"partition:{partition}#{offset}",
        "time": kafka_time(timestamp_ms),
    }
    for name, raw in headers or ():
        ext = "kafkaheader" + _EXT_CHARS.sub("", name.lower())
        text = raw.decode(errors="backslashreplace") if raw is not None else ""
        attributes[ext] = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if key is not None:
        text = key.decode(errors="replace")
        attributes["key"] = attributes["partitionkey"] = _CONTROL.sub("", text)
    attributes["knativekafkapartition"] = str(partition)
    attributes["knativekafkaoffset"] = str(offset)
    attributes["knativeerrordest"] = destination
    attributes["knativeerrordata"] = base64.b64encode(reason.encode()[:1024]).decode()
    return WireEvent(attributes, value or b"")
