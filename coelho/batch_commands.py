"""`coelho batch`: batch ML studies on the lake's Delta tables, logged to MLflow beside the online models.

coelho batch train tfd --version 12          # train, compare with River, log a run, register coelho-tfd-batch
coelho batch train ecci --truth-seed 42      # ARI against the latent segments of the producer of seed 42
coelho batch train eta --via-broker          # a batch.study.requested event: the JobSink runs the study as a Job
coelho batch report tfd [--json] [--runs 3]  # the latest studies: batch vs River per metric, the figures
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any

import click

from eventing.domains import DOMAINS

DOMAIN_NAMES = tuple(DOMAINS)  # every declared domain: a study is chosen by the domain's task


def _environ() -> dict[str, str]:
    """The platform's addresses (coelho settings), overridden by whatever the environment already says."""
    from coelho.settings import Settings

    return {**Settings.load().function_env(), **{k: v for k, v in os.environ.items() if v}}


@click.group()
def batch() -> None:
    """Batch studies: scikit-learn on a lake table version, against River on the same events."""


@batch.command()
@click.argument("domain", type=click.Choice(DOMAIN_NAMES))
@click.option("--version", type=int, default=None, help="Delta table version to read (default: the latest)")
@click.option("--model", "model", default=None, help="batch model to register (default: the task's first)")
@click.option("--rows", type=int, default=None, help="keep only the most recent N rows")
@click.option(
    "--truth-seed",
    type=int,
    default=None,
    help="ecci: seed of the producer that wrote the table, to regenerate its latent segments (ARI)",
)
@click.option("--no-online", is_flag=True, help="skip the River replay (no online-vs-batch gap)")
@click.option("--json", "as_json", is_flag=True, help="print the study's summary as JSON at the end")
@click.option(
    "--via-broker",
    is_flag=True,
    help="post a batch.study.requested event instead: the batch-study Trigger's JobSink runs the study as a Job",
)
@click.option("--broker", default=None, help="with --via-broker: the Broker ingress URL (default: the local router's)")
def train(
    domain: str,
    version: int | None,
    model: str | None,
    rows: int | None,
    truth_seed: int | None,
    no_online: bool,
    as_json: bool,
    via_broker: bool,
    broker: str | None,
) -> None:
    """Train DOMAIN's batch models on its lake table, compare them with River, log the study to MLflow."""
    from functions.batch.dataset import StudyError
    from functions.batch.report import dumps, log_study
    from functions.batch.study import run_study

    if via_broker:
        _request(domain, version, model, rows, truth_seed, no_online, broker)
        return
    env = _environ()
    started = time.perf_counter()

    def progress(message: str) -> None:
        click.echo(f"[{time.perf_counter() - started:6.1f}s] {message}", err=as_json)
        sys.stdout.flush()

    try:
        result = run_study(
            domain,
            version=version,
            model=model,
            rows=rows,
            environ=env,
            online=not no_online,
            truth_seed=truth_seed,
            progress=progress,
        )
    except StudyError as exc:
        raise click.ClickException(str(exc)) from None
    progress("logging the run and registering the model in MLflow")
    try:
        # MLflow prints where to view the run on stdout: with --json, stdout holds the summary only
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            log_study(result, env)
    except Exception as exc:
        raise click.ClickException(
            f"MLflow did not take the study: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        ) from None
    progress(f"run {result.run_id}: registered coelho-{domain}-batch version {result.model_version}")
    for kind, values in result.gap.items():
        progress(
            f"gap batch - River ({kind.removeprefix('vs_')}): "
            + ", ".join(f"{k} {v:+.4f}" if v is not None else f"{k} n/a" for k, v in values.items())
        )
    for note in result.notes:
        progress(f"note: {note}")
    if as_json:
        click.echo(dumps(result.summary()))


def _request(
    domain: str,
    version: int | None,
    model: str | None,
    rows: int | None,
    truth_seed: int | None,
    no_online: bool,
    broker: str | None,
) -> None:
    """`train --via-broker`: the study's options as a BATCH_STUDY_REQUESTED event to the Broker."""
    import requests

    from coelho.settings import Settings
    from eventing.cloudevent_types import BATCH_STUDY_REQUESTED
    from functions.batch.job import post_request

    settings = Settings.load()
    target = broker or f"{settings.broker_url}/{settings.namespace}/default"
    options = {"version": version, "model": model, "rows": rows, "truth_seed": truth_seed}
    data = {"domain": domain, **{k: v for k, v in options.items() if v is not None}}
    if no_online:
        data["online"] = False
    try:
        event_id = post_request(target, data)
    except requests.ConnectionError:
        raise click.ClickException(
            f"the Broker ingress is not reachable at {target}: is the platform running?"
        ) from None
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"{BATCH_STUDY_REQUESTED} {event_id} taken by the Broker: the study runs as a Job; "
        f"`coelho batch report {domain}` shows it once logged"
    )


@batch.command()
@click.argument("domain", type=click.Choice(DOMAIN_NAMES))
@click.option("--runs", type=int, default=1, show_default=True, help="how many of the latest studies")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def report(domain: str, runs: int, as_json: bool) -> None:
    """The latest batch studies of DOMAIN from MLflow: batch vs River per metric, the gaps, the figures."""
    from functions.batch.report import dumps, format_report, metrics_table, reports

    try:
        found = reports(domain, runs, _environ())
    except Exception as exc:
        raise click.ClickException(f"cannot read the studies from MLflow: {str(exc).splitlines()[0][:300]}") from None
    if not found:
        raise click.ClickException(f"no finished batch study of {domain} yet: `coelho batch train {domain}` runs one")
    if as_json:
        out: list[dict[str, Any]] = [{**r, "table": metrics_table(r)} for r in found]
        click.echo(dumps(out if runs > 1 else out[0]))
        return
    click.echo("\n\n".join(format_report(r) for r in found))
