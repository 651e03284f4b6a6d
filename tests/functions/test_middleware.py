"""The middleware's own encoding and decoding agree with the cloudevents SDK, which stays the reference: if the
library changes how it writes or reads an event, these fail. No process is started."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http_event, to_binary_event
from cloudevents.core.v1.event import CloudEvent

from functions.middleware.events import Event, decode, event_data, make_event, to_http
from functions.middleware.servers import SERVERS, serve, server_name

ATTRIBUTE_VALUES: list[dict[str, Any]] = [
    {},
    {"domain": "tfd", "partitionkey": "customer 42"},
    {"partitionkey": 'São Paulo / 100% "quoted"'},
    {"subject": "trip-1", "partitionkey": 123},
    {"domain": "eta", "partitionkey": "d\u00e9j\u00e0 vu\u2014ok"},
]
DATA: list[Any] = [
    {"amount": 12.5, "when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)},
    {"nested": {"a": [1, 2]}},
    [1, 2],
    None,
]


@pytest.mark.parametrize("extensions", ATTRIBUTE_VALUES)
@pytest.mark.parametrize("data", DATA)
def test_to_http_writes_what_the_sdk_writes(extensions: dict[str, Any], data: Any) -> None:
    ours = make_event("com.coelho.realtime.tfd.prediction", "/coelho/functions/predict/tfd", data, **extensions)
    sdk = CloudEvent(dict(ours.attributes), data)
    headers, body = to_http(ours)
    message = to_binary_event(sdk)
    assert dict(headers) == {k.lower(): v for k, v in message.headers.items()}
    assert (json.loads(body) if body else None) == (json.loads(message.body) if message.body else None)


@pytest.mark.parametrize("extensions", ATTRIBUTE_VALUES)
@pytest.mark.parametrize(
    "when",
    [
        None,
        datetime(2026, 11, 28, 12, 0, tzinfo=UTC),
        datetime(2026, 11, 28, 9, 0, 0, 250000, tzinfo=timezone(timedelta(hours=-3))),
    ],
)
def test_decode_reads_what_the_sdk_reads(extensions: dict[str, Any], when: datetime | None) -> None:
    attributes = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/coelho/tests",
        "type": "com.coelho.realtime.tfd.record",
        "datacontenttype": "application/json",
        **extensions,
    }
    if when is not None:
        attributes["time"] = when
    message = to_binary_event(CloudEvent(attributes, {"amount": 3}))
    ours = decode(dict(message.headers), message.body)
    sdk = from_http_event(HTTPMessage(headers={k.lower(): v for k, v in message.headers.items()}, body=message.body))
    assert ours.get_attributes() == {k: (str(v) if k == "partitionkey" else v) for k, v in sdk.get_attributes().items()}
    assert event_data(ours) == event_data(sdk) == {"amount": 3}


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"ce-time": "2026-11-28T12:00:00"}, "naive time"),
        ({"ce-time": "yesterday"}, "bad time"),
        ({"ce-specversion": "0.9"}, "unknown specversion"),
        ({"ce-id": ""}, "empty id"),
    ],
)
def test_what_the_direct_decoder_leaves_alone_the_sdk_judges(change: dict[str, str], reason: str) -> None:
    """The direct decoder never accepts what the SDK rejects: such requests get the SDK's verdict (a 400)."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "1",
        "ce-source": "/t",
        "ce-type": "x.y",
        "content-type": "application/json",
        **change,
    }
    sdk_error = None
    try:
        from_http_event(HTTPMessage(headers=headers, body=b"{}"))
    except Exception as exc:
        sdk_error = exc
    try:
        decode(headers, b"{}")
    except ValueError:
        assert sdk_error is not None, reason
    else:
        assert sdk_error is None, reason


def test_structured_mode_and_other_extensions_go_through_the_sdk() -> None:
    envelope = {
        "specversion": "1.0",
        "id": "s1",
        "source": "/t",
        "type": "x.y",
        "datacontenttype": "application/json",
        "someext": "v",
        "data": {"a": 1},
    }
    event = decode({"Content-Type": "application/cloudevents+json"}, json.dumps(envelope).encode())
    assert isinstance(event, Event) and event.get_extension("someext") == "v" and event_data(event) == {"a": 1}
    with pytest.raises(ValueError, match="not a CloudEvent"):
        decode({"content-type": "application/json"}, b"{}")


def test_an_unknown_server_is_a_start_up_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert server_name({}, "waitress") == "waitress" and "granian" in SERVERS
    monkeypatch.setenv("COELHO_SERVER", "uvicorn")
    with pytest.raises(SystemExit, match="COELHO_SERVER='uvicorn': choose one of"):
        serve(lambda: pytest.fail("no app is built for an unknown server"))  # type: ignore[arg-type,return-value]
