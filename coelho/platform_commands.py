"""`coelho invoke`, `coelho models` and `coelho training`: talk to the functions and their model state.

    coelho invoke learn --type com.coelho.realtime.tfd.record --file tx.json
    coelho invoke predict --data '{"amount": 12.5, ...}' -e domain=tfd
    coelho models --json
    coelho training pause tfd && coelho training resume tfd
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
FUNCTIONS = ("learn", "predict", "checkpoint", "chat")


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
def invoke(function: str, ce_type: str, source: str, ce_id: str | None, data: str | None, data_file: Any,
           extensions: tuple[str, ...], structured: bool, url: str | None) -> None:
    """Send a CloudEvent to FUNCTION the way `kn func invoke` does and print the reply."""
    import requests
    from cloudevents.core.bindings.http import to_binary_event, to_structured_event
    from cloudevents.core.v1.event import CloudEvent

    raw = data_file.read() if data_file else (data if data is not None else DEFAULT_DATA)
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--data/--file") from None
    attributes: dict[str, Any] = {
        "specversion": "1.0", "id": ce_id or str(uuid.uuid4()), "source": source, "type": ce_type,
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
        response = requests.post(target, data=message.body, headers=dict(message.headers), timeout=30)
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


def model_rows(client: Any) -> list[dict[str, Any]]:
    """Per domain model: name, version, events learned, paused or live, main metrics, last checkpoint."""
    from eventing.domains import DOMAINS
    from functions.model_state.keys import key, log_behind, model_key
    from functions.model_state.replica import models_for

    rows = []
    for domain in DOMAINS.values():
        names = {m.decode() for m in client.smembers(key(domain.name, "models"))} | set(models_for(domain))
        paused = client.get(key(domain.name, "paused_at"))
        head = int(client.get(key(domain.name, "seq")) or 0)
        for name in sorted(names):
            raw = client.hget(model_key(domain.name, name, "summary"), "json")
            summary = json.loads(raw) if raw else {}
            ck = client.get(model_key(domain.name, name, "checkpoint"))
            checkpoint = json.loads(ck) if ck else None
            metrics = summary.get("metrics", {})
            row: dict[str, Any] = {
                "domain": domain.name,
                "model": name,
                "version": checkpoint["version"] if checkpoint else None,
                "events_learned": summary.get("events_learned", 0),
                "seq": summary.get("seq", 0),
                "log_head": head,
                "behind": log_behind(head, summary.get("seq")),  # committed, not applied yet (paused, or lagging)
                "training": "paused" if paused is not None else "live",
                "paused_at": int(paused) if paused is not None else None,
                "metrics": {m: metrics.get(m) for m in domain.main_metrics},
                "last_checkpoint": checkpoint,
            }
            if "n_clusters" in summary:
                row["n_clusters"] = summary["n_clusters"]
                row["n_micro_clusters"] = summary["n_micro_clusters"]
            rows.append(row)
    return rows


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else "-" if value is None else str(value)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def models(as_json: bool) -> None:
    """Show each domain model: version, events learned, paused or live, main metrics, last checkpoint."""
    import redis

    try:
        rows = model_rows(_redis())
    except redis.ConnectionError as exc:
        raise click.ClickException(f"Redis is not reachable ({exc}): is the platform up? (coelho up)") from None
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        ck = row["last_checkpoint"]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ck["time_ms"] / 1000)) if ck else "never"
        metrics = "  ".join(f"{k} {_fmt(v)}" for k, v in row["metrics"].items())
        extra = f"  clusters {row['n_clusters']} ({row['n_micro_clusters']} micro)" if "n_clusters" in row else ""
        behind = f" ({row['behind']:,} behind)" if row["behind"] else ""
        click.echo(
            f"{row['domain']:<5} {row['model']:<24} v{_fmt(row['version']):<4} {row['events_learned']:>9,} learned  "
            f"{row['training']:<6}{behind}  {metrics}{extra}  last checkpoint: {when}"
        )


@click.group()
def training() -> None:
    """Pause or resume learning of a domain (events keep being logged; resume catches up)."""


def _control(action: str, domain: str) -> None:
    import redis

    from eventing.domains import get_domain
    from functions.learn import set_training

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
def checkpoint(domains: tuple[str, ...], broker: str | None) -> None:
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
            "specversion": "1.0", "id": str(uuid.uuid4()), "source": "/coelho/cli", "type": CHECKPOINT_REQUESTED,
            "datacontenttype": "application/json",
        },
        {"reason": "on demand", **({"domains": names} if names else {})},
    )
    message = to_binary_event(event)
    try:
        response = requests.post(target, data=message.body, headers=dict(message.headers), timeout=15)
    except requests.ConnectionError:
        raise click.ClickException(f"the Broker ingress is not reachable at {target}: is the platform running?") from None
    if response.status_code != 202:
        raise click.ClickException(f"the Broker refused the request: HTTP {response.status_code} {response.text.strip()}")
    click.echo(f"checkpoint requested for {', '.join(names) or 'all domains'} (event {event.get_id()}); "
               "`coelho models` shows the new versions once registered")
