"""`coelho produce DOMAIN` and `python -m producers DOMAIN`: one domain's stream into Kafka.

coelho produce tfd --rate 50                     # until stopped, 50 events/s
coelho produce eta --count 10000 --rate 0        # as fast as possible, then stop
coelho produce tfd --seed 7 --count 1000 --output tfd.jsonl   # record a stream ...
coelho produce tfd --replay tfd.jsonl --rate 200               # ... and replay it

On a terminal a progress line shows how many events were sent, the rate and the time left; the JSON summary is
printed at the end (stdout). Kafka's client logs only warnings unless --verbose.
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
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Same seed, same stream (ids and timestamps included). Events already sent with a seed are duplicates: "
    "learn-one drops them, so producing the same seed twice teaches the models nothing the second time (the "
    "summary counts them). Omit --seed for new events.",
)
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
    help="Stream a JSONL file instead of generating (replaying a file twice sends duplicates: nothing new is learned).",
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
@click.option("--quiet", "-q", is_flag=True, help="No progress line; only warnings and errors on stderr.")
@click.option("--verbose", "-v", is_flag=True, help="Log what the producer and the Kafka client do (INFO).")
@click.option("--log-level", default=None, help="Log level of everything (overrides --quiet / --verbose).")
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
    quiet: bool,
    verbose: bool,
    log_level: str | None,
) -> None:
    """Produce DOMAIN's stream (tfd, eta, ecci, or its topic name) to Kafka as CloudEvent records."""
    from coelho.progress import Progress
    from coelho.settings import Settings
    from producers.producer import produce as run

    if quiet and verbose:
        raise click.UsageError("give --quiet or --verbose, not both")
    bar = Progress(total=count, label=f"{domain}", unit="events", enabled=False if quiet or output == "-" else None)
    configure_logging(log_level, quiet=quiet, verbose=verbose, terminal=bar.enabled)
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
    seen_before = _seed_runs(settings, redis_url, domain, seed) if seed is not None and output is None else None
    with bar:
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
            progress=bar.update if bar.enabled else None,
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
    if seen_before is not None:
        duplicates = min(seen_before.previous, stats.sent)
        summary["duplicates"] = duplicates
        seen_before.record(stats.sent)
        if duplicates:
            click.echo(
                f"note: {duplicates:,} of these events were sent before with --seed {seed} (same ids): learn-one "
                "drops them as duplicates, so the models learn nothing from them. Omit --seed (or use a new one) "
                "for new events.",
                err=True,
            )
    click.echo(json.dumps(summary), err=to_stdout)
    if stats.errors and stats.acknowledged == 0:
        sys.exit(1)


def configure_logging(level: str | None, *, quiet: bool, verbose: bool, terminal: bool) -> None:
    """Quiet by default: the Kafka client says only warnings (its INFO is dozens of lines per run); the producer's
    own lines (what it produces, rate changes) go to a log (not a terminal, e.g. a platform service) unless
    --quiet, and to a terminal only with --verbose (the progress line says the same). --log-level sets all."""
    if level is not None:
        root, own = level.upper(), level.upper()
    elif verbose:
        root, own = "INFO", "INFO"
    elif quiet:
        root, own = "WARNING", "WARNING"
    else:
        root, own = "WARNING", "WARNING" if terminal else "INFO"
    logging.basicConfig(level=root, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger().setLevel(root)
    logging.getLogger("producers").setLevel(own)


SEEDS_KEY = "coelho:producer:{domain}:seeds"  # hash: seed -> events sent with it so far (the most of any run)


class _SeedRuns:
    """How many events were sent before with a seed (their ids repeat), in Redis: `previous`, then `record`."""

    def __init__(self, client: Any, domain: str, seed: int) -> None:
        self.client, self.key, self.field = client, SEEDS_KEY.format(domain=domain), str(seed)
        raw = client.hget(self.key, self.field)
        self.previous = int(raw) if raw else 0

    def record(self, sent: int) -> None:
        try:
            if sent > self.previous:
                self.client.hset(self.key, self.field, str(sent))
        except Exception:  # Redis went away: the note is a courtesy, the run itself succeeded
            pass


def _seed_runs(settings: Any, redis_url: str | None, domain: str, seed: int) -> _SeedRuns | None:
    """The seed's earlier runs, or None when Redis cannot tell (it is optional for producing)."""
    import redis

    try:
        client = redis.Redis.from_url(redis_url or settings.redis_url, socket_timeout=1, socket_connect_timeout=1)
        return _SeedRuns(client, domain, seed)
    except redis.RedisError:
        return None


__all__ = ["produce", "DOMAINS"]
