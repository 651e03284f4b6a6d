"""CloudEvents as the functions read and write them, and their HTTP binary-mode encoding.

`Event` holds attributes and data and offers the read API of the cloudevents SDK's events (`get_type`,
`get_source`, `get_id`, `get_extension`, `get_data`, `get_attributes`), so a handler reads an event the same way
whichever way it arrived. `decode` reads the common request, a binary-mode CloudEvent 1.0 with JSON data and the
platform's attributes, directly from its headers (the SDK's generic decode costs ~125 µs, more than a River
prediction); anything else (structured mode, other attributes, other content types, anything doubtful) goes
through the SDK's `from_http_event`, which also words the rejection of an invalid event. `to_http` writes the
binary-mode headers the CloudEvents HTTP binding specifies (percent-encoding of section 3.1.3.2), equal to the
SDK's `to_binary_event` (checked by tests/functions/test_middleware.py).

    >>> event = decode({"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/shop", "ce-type": "order.placed",
    ...                 "ce-domain": "tfd", "content-type": "application/json"}, b'{"amount": 12.5}')
    >>> event.get_type(), event.get_extension("domain"), event_data(event)
    ('order.placed', 'tfd', {'amount': 12.5})
    >>> headers, body = to_http(make_event("order.priced", "/pricing", {"total": 12.5}, partitionkey="c 1"))
    >>> dict(headers)["ce-partitionkey"], body
    ('c%201', b'{"total": 12.5}')
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_http_event

from functions.middleware.auth import BrokerTokenUnreadable, broker_headers
from functions.middleware.limits import TooDeep, loads_json

_ids = random.Random()  # event ids need uniqueness, not secrecy: os.urandom per reply was ~4% of predict's CPU

# Attributes `decode` reads itself; an event with any other goes through the SDK.
DIRECT_ATTRIBUTES = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "domain",
        "partitionkey",
        "model",
        "modelversion",
        "traceparent",
        "tracestate",
    }
)
# Characters a header value keeps as they are (CloudEvents HTTP binding 3.1.3.2: printable ASCII but space,
# double quote and percent).
_HEADER_SAFE = "!#$&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"
_NEEDS_QUOTING = re.compile(r"[^!#$&-~]")  # outside 0x21-0x7E, or space, '"', '%'


class UnsupportedEvent(ValueError):
    """The request is not an event this function can act on (HTTP 400 with the reason)."""


class Event:
    """A CloudEvent: attributes (specversion, id, source, type, time, extensions ...) and data.

    `wants_reply` is a property of the delivery, not of the event: False when the request said `?reply=none`.
    """

    __slots__ = ("attributes", "data", "wants_reply")

    def __init__(self, attributes: dict[str, Any], data: Any = None, wants_reply: bool = True) -> None:
        self.attributes = attributes
        self.data = data
        self.wants_reply = wants_reply

    @classmethod
    def from_sdk(cls, event: BaseCloudEvent) -> Event:
        return cls(dict(event.get_attributes()), event.get_data())

    def get_type(self) -> str:
        return str(self.attributes["type"])

    def get_source(self) -> str:
        return str(self.attributes["source"])

    def get_id(self) -> str:
        return str(self.attributes["id"])

    def get_time(self) -> datetime | None:
        value = self.attributes.get("time")
        return value if isinstance(value, datetime) else None

    def get_extension(self, name: str) -> Any:
        return self.attributes.get(name)

    def get_data(self) -> Any:
        return self.data

    def get_attributes(self) -> dict[str, Any]:
        return dict(self.attributes)

    def __repr__(self) -> str:
        return f"Event({self.attributes!r}, {self.data!r})"


def reseed_ids() -> None:
    """Fresh event ids in every serving process (a forked worker must not repeat its parent's)."""
    _ids.seed()


def make_event(ce_type: str, source: str, data: Any, **extensions: Any) -> Event:
    """A new JSON CloudEvent; extensions with a None value are left out."""
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.UUID(int=_ids.getrandbits(128), version=4)),
        "source": source,
        "type": ce_type,
        "time": datetime.now(UTC),
        "datacontenttype": "application/json",
    }
    attributes.update({k: v for k, v in extensions.items() if v is not None})
    return Event(attributes, data)


def reply(request_event: Event | BaseCloudEvent, ce_type: str, source: str, data: Any, **extensions: Any) -> Event:
    """A reply to `request_event`: carries over its `domain` and `partitionkey` extensions unless given."""
    for name in ("domain", "partitionkey"):
        if name not in extensions:
            value = request_event.get_extension(name)
            if value is not None:
                extensions[name] = value
    return make_event(ce_type, source, data, **extensions)


def event_data(event: Event | BaseCloudEvent) -> Any:
    """The event's data as JSON (dict, list, ...): bytes and strings are parsed, None stays None."""
    data = event.get_data()
    if isinstance(data, bytes | bytearray):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UnsupportedEvent("data is not UTF-8 text: the platform's events carry a JSON object") from None
    if isinstance(data, str):
        text = data.strip()
        if not text:
            return None
        try:
            return loads_json(text)
        except TooDeep:
            raise UnsupportedEvent("data is JSON nested too deeply: the platform's events nest a few levels") from None
        except ValueError:
            raise UnsupportedEvent("data is not JSON: the platform's events carry a JSON object") from None
    return data


def reply_unwanted(query_string: str | bytes) -> bool:
    """The request says `?reply=none` (the learn Triggers' subscriber URI): do the work, answer 204 without an
    event. The first `reply` value counts, as in a Flask `request.args`.

    >>> reply_unwanted("reply=none"), reply_unwanted(b"trace=1&reply=none"), reply_unwanted("")
    (True, True, False)
    """
    if not query_string:
        return False
    text = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    return parse_qs(text).get("reply", [""])[0] == "none"


# --- decoding ---------------------------------------------------------------------------------------------------
def decode(headers: Mapping[str, str], body: bytes, lower_case: bool = False) -> Event:
    """A CloudEvent from an HTTP request (binary or structured mode), or UnsupportedEvent saying why not.
    lower_case: the header names are lower-case already."""
    lower = headers if lower_case else {k.lower(): v for k, v in headers.items()}
    direct = _decode_direct(lower, body)
    if direct is not None:
        return direct
    is_structured = lower.get("content-type", "").startswith("application/cloudevents")
    if not is_structured and "ce-type" not in lower:
        raise UnsupportedEvent(
            "not a CloudEvent: send binary mode (ce-specversion, ce-id, ce-source, ce-type headers) "
            "or structured mode (Content-Type: application/cloudevents+json)"
        )
    try:
        event = Event.from_sdk(from_http_event(HTTPMessage(headers=dict(lower), body=body)))
    except Exception as exc:  # the SDK raises several kinds (validation, JSON, ...): all mean a bad request
        raise UnsupportedEvent(f"not a valid CloudEvent: {exc}") from None
    when = event.attributes.get("time")
    if isinstance(when, datetime):
        _check_time(when)
    return event


def _check_time(when: datetime) -> None:
    """A `time` every reader can use: one that is still a date in UTC (9999-12-31T23:00-05:00 is not)."""
    try:
        when.astimezone(UTC)
    except (OverflowError, ValueError):
        raise UnsupportedEvent(f"time {when.isoformat()} is out of range") from None


def _decode_direct(lower: Mapping[str, str], body: bytes) -> Event | None:
    """The common request read from its headers, or None when the SDK should decide (anything unusual)."""
    content_type = lower.get("content-type", "")
    if lower.get("ce-specversion") != "1.0" or not (
        content_type == "application/json" or content_type.startswith("application/json;")
    ):
        return None
    attributes: dict[str, Any] = {}
    for name, value in lower.items():
        if name.startswith("ce-"):
            attribute = name[3:]
            if attribute not in DIRECT_ATTRIBUTES:
                return None
            attributes[attribute] = unquote(value) if "%" in value else value
    if not (attributes.get("id") and attributes.get("source") and attributes.get("type")):
        return None
    if "time" in attributes:
        try:
            when = datetime.fromisoformat(attributes["time"])
        except ValueError:
            return None
        if when.tzinfo is None:
            return None  # the SDK rejects it, with its reason
        _check_time(when)
        attributes["time"] = when
    attributes["datacontenttype"] = content_type
    return Event(attributes, body)


# --- encoding ---------------------------------------------------------------------------------------------------
def header_value(value: Any) -> str:
    """An attribute value as a header value: RFC 3339 times ('Z' for UTC), percent-encoding where needed.

    >>> header_value("/coelho/functions/predict/tfd"), header_value("São Paulo"), header_value(datetime(2026, 1, 2, tzinfo=UTC))
    ('/coelho/functions/predict/tfd', 'S%C3%A3o%20Paulo', '2026-01-02T00:00:00Z')
    """
    if isinstance(value, datetime):
        text = value.isoformat()
        if text.endswith("+00:00"):
            text = text[:-6] + "Z"
    else:
        text = str(value)
    return quote(text, safe=_HEADER_SAFE) if _NEEDS_QUOTING.search(text) else text


def json_default(value: Any) -> Any:
    """JSON for the values events carry beyond JSON's own: datetimes as RFC 3339 ('Z' for UTC), else str."""
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    return str(value)


def to_http(event: Event) -> tuple[list[tuple[str, str]], bytes]:
    """Binary-mode headers and body of a JSON event (as the SDK's `to_binary_event` writes them)."""
    headers: list[tuple[str, str]] = []
    content_type = "application/json"
    for name, value in event.attributes.items():
        if name == "datacontenttype":
            content_type = str(value)
        elif value is not None:
            headers.append((f"ce-{name}", header_value(value)))
    headers.append(("content-type", content_type))
    data = event.data
    if data is None:
        body = b""
    elif isinstance(data, bytes | bytearray):
        body = bytes(data)
    else:
        body = json.dumps(data, default=json_default).encode("utf-8")
    return headers, body


def post_event(url: str, event: Event, session: Any = None, timeout: float = 2.0) -> None:
    """POST `event` in binary mode to `url` (the Broker's ingress), with the Broker token when
    COELHO_BROKER_TOKEN_FILE is set (functions/middleware/auth.py); raises requests' errors for the caller to log
    (an unreadable token file too)."""
    import requests

    headers, body = to_http(event)
    sent = dict(headers)
    try:
        sent.update(broker_headers())
    except BrokerTokenUnreadable as exc:
        raise requests.RequestException(f"no token for the Broker: {exc}") from exc
    (session or requests).post(url, data=body, headers=sent, timeout=timeout).raise_for_status()
