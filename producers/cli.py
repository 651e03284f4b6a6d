"""`coelho produce DOMAIN` and `python -m producers DOMAIN`: one domain's stream into Kafka.

coelho produce tfd --rate 50                     # until stopped, 50 events/s
coelho produce eta --count 10000 --rate 0        # as fast as possible, then stop
coelho produce tfd --seed 7 --count 1000 --output tfd.jsonl   # record a stream ...
coelho produce tfd --replay tfd.jsonl --rate 200               # ... and replay it
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from datetime import datetime
from typing import Any

import click

from eventing.domains import DOMAINS, get_domain


def _domain(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return get_domain(value).name
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


@click.command("produce")
@click.argument("domain", callback=_domain, metavar="DOMAIN")
@click.option(
    "--rate",
    type=float,
    default=None,
    help="Events per second; 0 = as fast as possible. [default: settings producer_rate, 3]",
)
@click.option(
    "--count", type=click.IntRange(min=0), default=None, help="Stop after N records (delayed labels still follow)."
)
@click.option("--duration", type=click.FloatRange(min=0), default=None, help="Stop after S seconds.")
@click.option("--seed", type=int, default=None, help="Same seed, same stream (ids and timestamps included).")
@click.option(
    "--start",
    default=None,
    help="Event time of the first event (ISO 8601 or 'now'). [default: 2026-01-05T00:00Z with --seed, now without]",
)
@click.option("--drift-at", type=click.IntRange(min=0), default=None, help="Change the concept after N records.")
@click.option(
    "--replay",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Stream a JSONL file instead of generating.",
)
@click.option("--delayed-labels", is_flag=True, help="tfd: send is_fraud later as a separate label event.")
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus metrics on 127.0.0.1:PORT.")
@click.option(
    "--bootstrap-servers",
    envvar="KAFKA_BOOTSTRAP_SERVERS",
    default=None,
    help="Kafka bootstrap servers. [env KAFKA_BOOTSTRAP_SERVERS; default: settings]",
)
@click.option(
    "--redis-url",
    envvar="REDIS_URL",
    default=None,
    help="Redis with the producer controls. [env REDIS_URL; default: settings]",
)
@click.option(
    "--partitions", type=click.IntRange(min=1), default=6, show_default=True, help="Partitions of a topic created here."
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    default=None,
    help="Write JSONL here ('-' = stdout) instead of Kafka.",
)
@click.option("--log-level", default="INFO", show_default=True)
def produce(
    domain: str,
    rate: float | None,
    count: int | None,
    duration: float | None,
    seed: int | None,
    start: str | None,
    drift_at: int | None,
    replay: str | None,
    delayed_labels: bool,
    metrics_port: int | None,
    bootstrap_servers: str | None,
    redis_url: str | None,
    partitions: int,
    output: str | None,
    log_level: str,
) -> None:
    """Produce DOMAIN's stream (tfd, eta, ecci, or its topic name) to Kafka as CloudEvent records."""
    from coelho.settings import Settings
    from producers.producer import produce as run

    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    if count is not None and duration is not None:
        raise click.UsageError("give --count or --duration, not both")
    if delayed_labels and domain != "tfd":
        raise click.UsageError(f"--delayed-labels is for tfd only: {domain} has no label to delay")
    if start not in (None, "now"):
        try:
            datetime.fromisoformat(start.replace("Z", "+00:00"))
        except ValueError:
            raise click.BadParameter(
                f"{start!r} is not an ISO 8601 time (e.g. 2026-01-05T08:00:00Z) or 'now'", param_hint="--start"
            ) from None
    settings = Settings.load()
    stop = threading.Event()

    def _stop(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    to_stdout = output == "-"
    stats = run(
        domain,
        rate=settings.producer_rate if rate is None else rate,
        count=count,
        duration=duration,
        seed=seed,
        start=start,
        drift_at=drift_at,
        delayed_labels=delayed_labels,
        replay=replay,
        bootstrap_servers=bootstrap_servers or settings.kafka_bootstrap,
        metrics_port=metrics_port,
        redis_url=redis_url or settings.redis_url,
        partitions=partitions,
        output=sys.stdout if to_stdout else output,
        stop=stop,
    )
    summary = {
        "domain": domain,
        "sent": stats.sent,
        "acknowledged": stats.acknowledged,
        "errors": stats.errors,
        "seconds": round(stats.seconds, 3),
        "events_per_second": round(stats.events_per_second, 1),
        **stats.by_kind,
    }
    click.echo(json.dumps(summary), err=to_stdout)
    if stats.errors and stats.acknowledged == 0:
        sys.exit(1)


__all__ = ["produce", "DOMAINS"]
