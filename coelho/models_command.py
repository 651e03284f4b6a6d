"""`coelho models`: each domain's models, their versions, metrics and aliases, and the A/B tests between them.

coelho models --json
coelho models add tfd logreg --params '{"LogisticRegression": {"l2": 0.001}}'
coelho models split tfd champion=90 challenger=10
coelho models compare tfd
coelho models promote tfd logreg && coelho models rollback tfd
"""

from __future__ import annotations

import json
import time
from typing import Any

import click


def _settings() -> Any:
    from coelho.settings import Settings

    return Settings.load()


def _redis() -> Any:
    from functions.model_state.keys import connect

    return connect(_settings().redis_url)


def model_rows(client: Any) -> list[dict[str, Any]]:
    """Per domain model: name, version, events learned, paused or live, main metrics, last checkpoint, whether it
    is live (learning and served) and the aliases it holds."""
    from eventing.domains import DOMAINS
    from functions.model_state import ab
    from functions.model_state.keys import key, log_behind, model_key
    from functions.model_state.replica import models_for

    rows = []
    for domain in DOMAINS.values():
        specs = {s.name: s for s in ab.live_models(client, domain, models_for(domain))}
        names = {m.decode() for m in client.smembers(key(domain.name, "models"))} | set(specs)
        paused = client.get(key(domain.name, "paused_at"))
        head = int(client.get(key(domain.name, "seq")) or 0)
        held = ab.aliases(client, domain)
        first = ab.champion(client, domain, list(specs))["model"]
        for name in sorted(names, key=lambda n: (n not in specs, n != first, n)):
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
                "live": name in specs,
                "aliases": sorted(a for a, v in held.items() if v.get("model") == name)
                or (["champion"] if name == first and "champion" not in held else []),
                "params": specs[name].params if name in specs else None,
                "start_seq": specs[name].start_seq if name in specs else None,
            }
            if "n_clusters" in summary:
                row["n_clusters"] = summary["n_clusters"]
                row["n_micro_clusters"] = summary["n_micro_clusters"]
            rows.append(row)
    return rows


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else "-" if value is None else str(value)


def serving_rows(client: Any) -> list[dict[str, Any]]:
    """Per domain: the split and every served (model, version) scored on live traffic against its label."""
    from eventing.domains import DOMAINS
    from functions.model_state import ab, ab_served
    from functions.model_state.keys import key

    return [
        {
            "domain": d.name,
            "split": ab.read_split(client.get(key(d.name, "split"))) or None,
            "live_scores": ab_served.live_scores(client, d),
        }
        for d in DOMAINS.values()
    ]


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """Show each domain model: version, events learned, paused or live, main metrics (shadow: test-then-train on
    every event), last checkpoint, aliases; then each domain's split and the served versions scored on live traffic.
    The sub-commands run A/B tests."""
    if ctx.invoked_subcommand is not None:
        return
    import redis

    try:
        client = _redis()
        rows = model_rows(client)
        serving = serving_rows(client)
    except redis.ConnectionError as exc:
        raise click.ClickException(f"Redis is not reachable ({exc}): is the platform up? (coelho up)") from None
    if as_json:
        by_domain = {entry["domain"]: entry for entry in serving}
        for row in rows:
            entry = by_domain[row["domain"]]
            row["split"] = entry["split"]
            row["served"] = [s for s in entry["live_scores"] if s["model"] == row["model"]]
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        ck = row["last_checkpoint"]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ck["time_ms"] / 1000)) if ck else "never"
        metrics = "  ".join(f"{k} {_fmt(v)}" for k, v in row["metrics"].items())
        extra = f"  clusters {row['n_clusters']} ({row['n_micro_clusters']} micro)" if "n_clusters" in row else ""
        behind = f" ({row['behind']:,} behind)" if row["behind"] else ""
        tags = ",".join(row["aliases"]) + ("" if row["live"] else " removed")
        click.echo(
            f"{row['domain']:<5} {row['model']:<24} v{_fmt(row['version']):<4} {tags.strip() or '-':<11} "
            f"{row['events_learned']:>9,} learned  "
            f"{row['training']:<6}{behind}  shadow: {metrics}{extra}  last checkpoint: {when}"
        )
    for entry in serving:
        if entry["split"]:
            total = sum(w for _, w in entry["split"])
            click.echo(
                f"{entry['domain']:<5} split: " + ", ".join(f"{a} {100 * w / total:.0f}%" for a, w in entry["split"])
            )
        for score in entry["live_scores"]:
            figures = "  ".join(f"{k} {_fmt(score[k])}" for k in ("accuracy", "log_loss", "mae", "rmse") if k in score)
            click.echo(
                f"{entry['domain']:<5} served {score['model']} v{_fmt(score['version'])} ({score['mode']}): "
                f"{score['scored']:,} scored on live traffic  {figures}"
            )


def _domain(name: str) -> Any:
    from eventing.domains import get_domain

    try:
        return get_domain(name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="DOMAIN") from None


def _run_control(domain: str, data: dict[str, Any]) -> dict[str, Any]:
    """One A/B action straight on the platform's Redis (and MLflow for aliases), as learn-one runs the
    `model.control` CloudEvent."""
    import os

    import redis

    from eventing.schema import ValidationError
    from functions.middleware.contract import DependencyUnavailable
    from functions.model_state import ab

    settings = _settings()
    unset = "MLFLOW_TRACKING_URI" not in os.environ
    if unset:  # the platform's MLflow, for this action only
        os.environ["MLFLOW_TRACKING_URI"] = settings.mlflow_uri
    try:
        return ab.control(_redis(), _domain(domain), data)
    except ValidationError as exc:
        raise click.ClickException("; ".join(f"{k}: {v}" for k, v in exc.errors.items())) from None
    except (redis.ConnectionError, DependencyUnavailable) as exc:
        raise click.ClickException(f"a dependency is not reachable ({exc}): is the platform up? (coelho up)") from None
    finally:
        if unset:
            os.environ.pop("MLFLOW_TRACKING_URI", None)


@models.command("add")
@click.argument("domain")
@click.argument("model")
@click.option("--params", default=None, help='hyper-parameters as JSON, e.g. \'{"LogisticRegression": {"l2": 0.001}}\'')
def models_add(domain: str, model: str, params: str | None) -> None:
    """Start MODEL learning DOMAIN's log beside the others (from the start of the log if it still holds its first
    event, else from now); learn-one and predict-one pick it up within seconds."""
    try:
        parsed = json.loads(params) if params else None
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--params") from None
    result = _run_control(domain, {"action": "add", "model": model, "params": parsed})
    if not result["added"]:
        click.echo(f"{result['domain']}/{model} is already live (started at seq {result['start_seq']})")
    elif result["start_seq"] == 0:
        click.echo(
            f"{result['domain']}/{model} added: starts from the start of the log (the log holds seq 1): "
            f"it replays {result['to_replay']:,} events, then learns live"
        )
    else:
        click.echo(
            f"{result['domain']}/{model} added: starts from now (the log no longer holds seq 1): it learns "
            f"the events after seq {result['start_seq']:,}"
        )


@models.command("remove")
@click.argument("domain")
@click.argument("model")
def models_remove(domain: str, model: str) -> None:
    """Stop MODEL of DOMAIN (not the champion's: promote another first). Its state stays readable."""
    result = _run_control(domain, {"action": "remove", "model": model})
    dropped = f" (aliases dropped: {', '.join(result['aliases_dropped'])})" if result["aliases_dropped"] else ""
    click.echo(f"{result['domain']}/{model} removed{dropped}")


def _crowned(result: dict[str, Any]) -> str:
    new, old = result["champion"], result["previous"]
    text = (
        f"{result['domain']}: champion is now {new['model']} v{_fmt(new.get('version'))} "
        f"(was {old.get('model')} v{_fmt(old.get('version'))}); predict-one follows within 2 s"
    )
    challenger = result.get("challenger")
    if challenger:
        text += f"; challenger {challenger.get('model')} v{_fmt(challenger.get('version'))}"
    return text


@models.command("promote")
@click.argument("domain")
@click.argument("target")
def models_promote(domain: str, target: str) -> None:
    """Make TARGET (a registered version number, or a live model: its latest version) DOMAIN's champion."""
    click.echo(_crowned(_run_control(domain, {"action": "promote", "target": target})))


@models.command("rollback")
@click.argument("domain")
def models_rollback(domain: str) -> None:
    """Give DOMAIN's champion back to the previous one."""
    click.echo(_crowned(_run_control(domain, {"action": "rollback"})))


@models.command("split")
@click.argument("domain")
@click.argument("weights", nargs=-1, required=True)
def models_split(domain: str, weights: tuple[str, ...]) -> None:
    """Split DOMAIN's default traffic, e.g. `champion=90 challenger=10` (aliases or live models), sticky per entity
    key. One arm (`champion=100`) ends the split."""
    from eventing.schema import ValidationError
    from functions.model_state.ab import parse_weights

    try:
        arms = dict(parse_weights(weights))
    except ValidationError as exc:
        raise click.BadParameter("; ".join(exc.errors.values()), param_hint="WEIGHTS") from None
    result = _run_control(domain, {"action": "split", "weights": arms})
    if result["split"] is None:
        click.echo(f"{result['domain']}: no split, the champion answers every request")
    else:
        click.echo(
            f"{result['domain']}: split "
            + ", ".join(f"{a} {w:g}%" for a, w in result["split"].items())
            + " (sticky per entity key)"
        )


@models.command("compare")
@click.argument("domain")
@click.option(
    "--batch",
    "batch_version",
    is_flag=False,
    flag_value="latest",
    default=None,
    help="also compare a batch study's model (coelho-DOMAIN-batch), frozen: --batch for the latest version, "
    "--batch N for version N",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def models_compare(domain: str, batch_version: str | None, as_json: bool) -> None:
    """Compare every pair of DOMAIN's live models on the same events (paired tests), with a verdict."""
    import redis

    from functions.model_state import ab_outcomes

    client = _redis()
    frozen = {}
    if batch_version is not None:
        from functions.batch.compare import frozen_answers

        try:
            name, answer = frozen_answers(client, _domain(domain), batch_version, _settings().function_env())
        except LookupError as exc:
            raise click.ClickException(str(exc)) from None
        frozen[name] = answer
    try:
        result = ab_outcomes.compare(client, _domain(domain), frozen=frozen)
    except redis.ConnectionError as exc:
        raise click.ClickException(f"Redis is not reachable ({exc}): is the platform up? (coelho up)") from None
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    if not result["pairs"]:
        click.echo(
            f"{result['domain']}: one live model ({', '.join(result['models'])}): "
            f"`coelho models add {result['domain']} MODEL` starts a challenger"
        )
    for pair in result["pairs"]:
        span = f"seq {pair['first_seq']}..{pair['last_seq']}" if pair["first_seq"] is not None else "no common events"
        click.echo(f"{result['domain']}: A={pair['a']} B={pair['b']}, {pair['n']:,} paired events ({span})")
        click.echo(f"  {pair['verdict']}")
