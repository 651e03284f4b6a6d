"""`coelho invoke`, `coelho training` and `coelho checkpoint`: talk to the functions and their model state
(`coelho models`: coelho/models_command.py).

coelho invoke learn --type com.coelho.realtime.tfd.record --file tx.json
coelho invoke predict --data '{"amount": 12.5, ...}' -e domain=tfd
coelho training pause tfd && coelho training resume tfd
coelho checkpoint tfd --wait
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any

import click

DEFAULT_TYPE = "boson.fn"  # what `kn func invoke` sends by default
DEFAULT_DATA = '{"message": "Hello World"}'
FUNCTIONS = ("learn", "predict", "checkpoint", "chat", "lake", "sql")


def _settings() -> Any:
    from coelho.settings import Settings

    return Settings.load()


def _redis() -> Any:
    from functions.model_state.keys import connect

    return connect(_settings().redis_url)


@click.command()
@click.argument("function", type=click.Choice(FUNCTIONS))
@click.option("--type", "ce_type", default=DEFAULT_TYPE, show_default=True, help="CloudEvent type")
@click.option("--source", default="/coelho/cli/invoke", show_default=True, help="CloudEvent source")
@click.option("--id", "ce_id", default=None, help="CloudEvent id (default: a new UUID)")
@click.option("--data", default=None, help="JSON data (default: kn func invoke's Hello World)")
@click.option("--file", "data_file", type=click.File("r"), default=None, help="read the JSON data from a file")
@click.option("-e", "--extension", "extensions", multiple=True, help="extension attribute key=value (repeatable)")
@click.option("--structured", is_flag=True, help="send in structured mode instead of binary mode")
@click.option("--url", default=None, help="function URL (default: the local platform's port for FUNCTION)")
def invoke(
    function: str,
    ce_type: str,
    source: str,
    ce_id: str | None,
    data: str | None,
    data_file: Any,
    extensions: tuple[str, ...],
    structured: bool,
    url: str | None,
) -> None:
    """Send a CloudEvent to FUNCTION the way `kn func invoke` does and print the reply (with the bearer token
    COELHO_API_TOKEN to predict, chat and sql when it is set)."""
    import requests
    from cloudevents.core.bindings.http import to_binary_event, to_structured_event
    from cloudevents.core.v1.event import CloudEvent

    from functions.middleware.auth import function_auth_headers

    raw = data_file.read() if data_file else (data if data is not None else DEFAULT_DATA)
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--data/--file") from None
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": ce_id or str(uuid.uuid4()),
        "source": source,
        "type": ce_type,
        "datacontenttype": "application/json",
    }
    for item in extensions:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: expected key=value", param_hint="-e")
        attributes[name.strip().lower()] = value
    event = CloudEvent(attributes, payload)
    message = to_structured_event(event) if structured else to_binary_event(event)
    target = url or _settings().url(function)
    try:
        headers = {**message.headers, **function_auth_headers(function)}
        response = requests.post(target, data=message.body, headers=headers, timeout=30)
    except requests.ConnectionError:
        raise click.ClickException(f"{function} is not reachable at {target}: is it running? (coelho up)") from None
    click.echo(f"HTTP {response.status_code}")
    for name, value in response.headers.items():
        if name.lower().startswith("ce-"):
            click.echo(f"{name}: {value}")
    body = response.text
    try:
        click.echo(json.dumps(json.loads(body), indent=2))
    except ValueError:
        click.echo(body)
    if response.status_code >= 400:
        sys.exit(1)


@click.group()
def training() -> None:
    """Pause or resume learning of a domain (events keep being logged; resume catches up)."""


def _control(action: str, domain: str) -> None:
    import redis

    from eventing.domains import get_domain
    from functions.model_state.event_log import set_training

    try:
        name = get_domain(domain).name
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="DOMAIN") from None
    try:
        click.echo(json.dumps(set_training(_redis(), name, action)))
    except redis.ConnectionError as exc:
        raise click.ClickException(f"Redis is not reachable ({exc}): is the platform up? (coelho up)") from None


@training.command()
@click.argument("domain")
def pause(domain: str) -> None:
    """Stop learning DOMAIN at the current end of its event log."""
    _control("pause", domain)


@training.command()
@click.argument("domain")
def resume(domain: str) -> None:
    """Resume learning DOMAIN: the models catch up on what arrived meanwhile."""
    _control("resume", domain)


@click.command()
@click.argument("domains", nargs=-1)
@click.option("--broker", default=None, help="Broker ingress URL (default: the local router's /<namespace>/default)")
@click.option(
    "--wait",
    is_flag=True,
    help="Wait until every live model of the domains has its new version (a progress line on a terminal).",
)
@click.option("--timeout", type=click.FloatRange(min=1), default=300.0, show_default=True, help="With --wait: seconds.")
def checkpoint(domains: tuple[str, ...], broker: str | None, wait: bool, timeout: float) -> None:
    """Ask the checkpoint function, through the Broker, to register model versions now (all domains by default).

    Sends the same `com.coelho.realtime.checkpoint.requested` CloudEvent a PingSource schedule sends, so it goes
    through the checkpoint Trigger (retries, dead letters) like any other event.
    """
    import requests
    from cloudevents.core.bindings.http import to_binary_event
    from cloudevents.core.v1.event import CloudEvent

    from eventing.cloudevent_types import CHECKPOINT_REQUESTED
    from eventing.domains import get_domain

    try:
        names = [get_domain(name).name for name in domains]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="DOMAINS") from None
    settings = _settings()
    target = broker or f"{settings.broker_url}/{settings.namespace}/default"
    event = CloudEvent(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/coelho/cli",
            "type": CHECKPOINT_REQUESTED,
            "datacontenttype": "application/json",
        },
        {"reason": "on demand", **({"domains": names} if names else {})},
    )
    message = to_binary_event(event)
    before = _checkpoints(names) if wait else {}
    try:
        response = requests.post(target, data=message.body, headers=dict(message.headers), timeout=15)
    except requests.ConnectionError:
        raise click.ClickException(
            f"the Broker ingress is not reachable at {target}: is the platform running?"
        ) from None
    if response.status_code != 202:
        raise click.ClickException(
            f"the Broker refused the request: HTTP {response.status_code} {response.text.strip()}"
        )
    if not wait:
        click.echo(
            f"checkpoint requested for {', '.join(names) or 'all domains'} (event {event.get_id()}); "
            "`coelho models` shows the new versions once registered"
        )
        return
    done = _wait_for_checkpoints(names, before, timeout)
    for (domain, model), record in sorted(done.items()):
        click.echo(f"{domain} {model}: version {record.get('version')}")
    if len(done) < len(before):
        missing = ", ".join(f"{d} {m}" for d, m in sorted(set(before) - set(done)))
        raise click.ClickException(f"no new version after {timeout:g} s for {missing} (see `coelho logs checkpoint`)")


def _checkpoints(names: list[str]) -> dict[tuple[str, str], bytes | None]:
    """The last checkpoint record of every live model of the domains (all when `names` is empty), as stored."""
    from eventing.domains import DOMAINS, get_domain
    from functions.model_state import ab
    from functions.model_state.keys import model_key
    from functions.model_state.replica import models_for

    client = _redis()
    out: dict[tuple[str, str], bytes | None] = {}
    for d in [get_domain(n) for n in names] or list(DOMAINS.values()):
        for spec in ab.live_models(client, d, models_for(d)):
            out[(d.name, spec.name)] = client.get(model_key(d.name, spec.name, "checkpoint"))
    return out


def _wait_for_checkpoints(
    names: list[str], before: dict[tuple[str, str], bytes | None], timeout: float
) -> dict[tuple[str, str], dict[str, Any]]:
    """Wait until each model's checkpoint record changed: the new records, with a progress line on a terminal."""
    from coelho.progress import Progress

    done: dict[tuple[str, str], dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    with Progress(total=len(before), label="checkpoints", unit="models") as bar:
        while len(done) < len(before) and time.monotonic() < deadline:
            for pair, raw in _checkpoints(names).items():
                if pair in before and pair not in done and raw is not None and raw != before[pair]:
                    done[pair] = json.loads(raw)
            bar.update(len(done), force=True)
            if len(done) < len(before):
                time.sleep(0.5)
    return done
