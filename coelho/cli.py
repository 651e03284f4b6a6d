"""`coelho`: start, watch and stop the platform (up / down / status / logs), plus sub-commands other packages add.

Sub-commands from other packages are registered lazily ("module:attribute"), so `up`, `down` and `status` never
import the producers or the functions. A sub-command that cannot be loaded is still listed: `--help` says why it is
unavailable and running it fails with that reason (never a silent "no such command").
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import re
import signal
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import click
import psutil

from coelho.platform_registry import other_platforms
from coelho.processes import port_holder, port_in_use
from coelho.progress import ServiceProgress
from coelho.runtime import Platform, StartError
from coelho.services import DOMAINS
from coelho.settings import Settings

LAZY_COMMANDS: dict[str, str] = {
    "produce": "producers.cli:produce",
    "invoke": "coelho.platform_commands:invoke",
    "models": "coelho.models_command:models",
    "training": "coelho.platform_commands:training",
    "checkpoint": "coelho.platform_commands:checkpoint",
    "lake": "coelho.lake_command:lake",
    "sql": "coelho.sql_command:sql",
    "batch": "coelho.batch_commands:batch",
    "dlq": "coelho.dlq_command:dlq",
}


def load_command(target: str) -> click.Command:
    """The click command at "module:attribute"; raises when the module cannot be imported or holds no such command."""
    module_name, attr = target.split(":")
    cmd = getattr(importlib.import_module(module_name), attr, None)
    if not isinstance(cmd, click.Command):
        raise LookupError(f"{module_name} has no click command {attr!r}")
    return cmd


def unavailable_command(name: str, target: str, exc: Exception) -> click.Command:
    """A stand-in for a sub-command that cannot be loaded: listed by --help with the reason, failing when run."""
    reason = f"cannot load {target}: {type(exc).__name__}: {exc}"

    def fail(**_: Any) -> None:
        raise click.ClickException(f"{name}: {reason}")

    return click.Command(
        name,
        callback=fail,
        help=f"Unavailable: {reason}",
        short_help=f"(unavailable: {exc})",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )


class LazyGroup(click.Group):
    """A click group that also offers the LAZY_COMMANDS, imported only when one is listed or run."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None or cmd_name not in LAZY_COMMANDS:
            return cmd
        try:
            return load_command(LAZY_COMMANDS[cmd_name])
        except Exception as exc:  # noqa: BLE001 — any failure to load is shown, and `coelho --help` still works
            return unavailable_command(cmd_name, LAZY_COMMANDS[cmd_name], exc)


@click.group(cls=LazyGroup)
def main() -> None:
    """COELHO RealTime: real-time machine learning platform, embedded on one machine."""


def _platform(echo: bool = True) -> Platform:
    return Platform(Settings.load(), echo=click.echo if echo else None)


def _stop_on_interrupt() -> None:
    """Ctrl-C (SIGINT) and SIGTERM raise KeyboardInterrupt in a foreground command (`up`, `logs -f`). Explicitly:
    a process started in the background by a non-interactive shell inherits SIGINT *ignored* (bash does that for
    `cmd &`), and then Ctrl-C / `kill -INT` would never stop it."""
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop_all(plat: Platform) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave half the platform running
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    problems = plat.stop()
    for line in problems:
        click.echo(f"warning: {line}", err=True)
    click.echo("stopped" if not problems else "stopped, with the warnings above")


# --- live summary --------------------------------------------------------------------------------------------------


def learned_per_domain(plat: Platform) -> dict[str, int] | None:
    """Events learned per domain, read from the learn function's /metrics (None: unavailable).

    Uses coelho_events_learned_total{domain} (summed) when the function exports it, else the gauge
    coelho_model_events_learned{domain,model} (max over the models of a domain: each model sees every event).
    """
    if "learn" not in plat.entries():
        return None
    try:
        with urllib.request.urlopen(plat.settings.url("learn") + "/metrics", timeout=1) as resp:  # noqa: S310
            return parse_learned(resp.read().decode())
    except Exception:  # noqa: BLE001 — the summary must never crash `up`
        return None


def parse_learned(text: str) -> dict[str, int]:
    from prometheus_client.parser import text_string_to_metric_families

    counter: dict[str, int] = {}
    gauge: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            dom = sample.labels.get("domain", "?")
            if sample.name == "coelho_events_learned_total":
                counter[dom] = counter.get(dom, 0) + int(sample.value)
            elif sample.name == "coelho_model_events_learned":
                gauge[dom] = max(gauge.get(dom, 0), int(sample.value))
    return counter or gauge


def summary_line(plat: Platform) -> str:
    status = plat.status()
    healthy = [n for n, st in status.items() if st.healthy]
    bad = [n for n, st in status.items() if not st.healthy]
    line = f"{time.strftime('%H:%M:%S')}  healthy {len(healthy)}/{len(status)}"
    if bad:
        line += f"  UNHEALTHY: {', '.join(bad)}"
    looping = [n for n, st in status.items() if st.phase == "crash-loop"]
    if looping:
        line += f"  CRASH-LOOPING: {', '.join(looping)}"
    restarted = {n: st.restarts for n, st in status.items() if st.restarts}
    if restarted:
        line += "  restarts: " + " ".join(f"{n}={k}" for n, k in restarted.items())
    learned = learned_per_domain(plat)
    if learned is not None:
        line += "  learned: " + " ".join(f"{d}={learned.get(d, 0)}" for d in DOMAINS)
    return line


# --- commands ------------------------------------------------------------------------------------------------------


@main.command()
@click.option("--detach", "-d", is_flag=True, help="Return once every service is healthy (leave it running).")
@click.option("--no-producers", is_flag=True, help="Do not start the synthetic event producers.")
@click.option("--interval", default=5.0, show_default=True, help="Seconds between live summary lines.")
def up(detach: bool, no_producers: bool, interval: float) -> None:
    """Start the whole platform, wait until healthy, then show a live summary (Ctrl-C stops everything).

    A supervisor restarts any service that exits, with an exponential backoff (coelho/supervisor.py): this process
    in the foreground, a detached `python -m coelho.supervisor` with --detach."""
    plat = _platform()
    s = plat.settings
    existing = plat.supervisor()
    if existing is not None:
        click.echo(f"COELHO RealTime: already running in {s.data_dir}, supervised by pid {existing['pid']}")
        if detach:
            _print_urls(plat)
            return
        _stop_on_interrupt()
        _summary_until_interrupted(plat, interval)
        _down_supervised(plat)
        return
    click.echo(f"COELHO RealTime: starting (data in {s.data_dir}, logs in {s.log_dir})")
    _stop_on_interrupt()
    if detach:
        try:  # checked here too: the detached supervisor is another process, whose own errors come back as text
            plat.plan(None, producers=not no_producers)
        except StartError as exc:
            click.echo(f"error: {exc}", err=True)
            click.echo("nothing was started.", err=True)
            sys.exit(1)
        _up_detached(plat, producers=not no_producers)
        return
    from coelho.supervisor import Supervisor

    sup = Supervisor(plat)
    sup.register()
    t0 = time.monotonic()
    try:
        try:
            with _start_progress(plat):
                plat.start(None, producers=not no_producers)
        except StartError as exc:
            click.echo(f"error: {exc}", err=True)
            click.echo("nothing was left running from this attempt.", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("\ninterrupted while starting: stopping what was started")
            _stop_all(plat)
            sys.exit(130)
        click.echo(f"all {len(plat.entries())} services healthy in {time.monotonic() - t0:.1f} s")
        _print_urls(plat)
        click.echo("Ctrl-C stops everything")
        sup.start_thread()
        _summary_until_interrupted(plat, interval)
        sup.stop()
        _stop_all(plat)
    finally:
        sup.stopping.set()
        sup.unregister()


@contextlib.contextmanager
def _start_progress(plat: Platform) -> Iterator[ServiceProgress]:
    """While the platform starts: on a terminal, a progress line under its "ready in" lines (services healthy of
    all, those still starting, the time so far); not on a terminal (a log, CI), only those lines."""
    bar = ServiceProgress(say=click.echo)
    echo, plat.echo, plat.progress = plat.echo, bar.echo, bar.update_services
    try:
        with bar:
            yield bar
    finally:
        plat.echo, plat.progress = echo, None


READY_LINE = re.compile(r"^(\S+)\s+ready in ")
SKIPPED_LINE = re.compile(r"^(\S+)\s+not started: ")


def _print_urls(plat: Platform) -> None:
    s = plat.settings
    names = list(plat.entries())
    if "dashboard" in names:
        click.echo(f"dashboard:  {s.url('dashboard')}")
    click.echo(f"MLflow:     {s.mlflow_uri}")
    if "prometheus" in names:
        click.echo(f"Prometheus: {s.url('prometheus')}")


def _summary_until_interrupted(plat: Platform, interval: float) -> None:
    try:
        while True:
            time.sleep(interval)
            click.echo(summary_line(plat))
    except KeyboardInterrupt:
        click.echo("\nstopping")


def _up_detached(plat: Platform, producers: bool) -> None:
    """Start the detached supervisor and relay its log until every service is healthy (or the start failed)."""
    from coelho.supervisor import spawn_detached

    planned = [svc.name for svc in plat.plan(None, producers=producers)]
    ready = {name for name in planned if plat.running(name)}  # waited for, never announced as "ready in"
    proc, log, offset = spawn_detached(plat, producers)
    ok = False
    bar = ServiceProgress()

    def show() -> None:
        bar.update_services([n for n in planned if n in ready], [n for n in planned if n not in ready])

    try:
        with bar, log.open("r", errors="replace") as fh:
            fh.seek(offset)
            failing = False
            while True:
                line = fh.readline()
                if not line:
                    if proc.poll() is not None:
                        rest = fh.read()
                        for extra in rest.splitlines():
                            bar.echo(extra, functools.partial(click.echo, err=True))
                        break
                    show()
                    time.sleep(0.1)
                    continue
                text = line.rstrip("\n")
                failing = failing or text.startswith("error:")
                bar.echo(text, functools.partial(click.echo, err=failing))
                if match := READY_LINE.match(text):
                    ready.add(match.group(1))
                elif (match := SKIPPED_LINE.match(text)) and match.group(1) in planned:
                    planned.remove(match.group(1))
                if text.startswith("all ") and "services healthy" in text:
                    ok = True
                    break
    except KeyboardInterrupt:
        click.echo("\ninterrupted while starting: stopping what was started")
        _down_supervised(plat)
        sys.exit(130)
    if not ok:
        sys.exit(proc.poll() or 1)
    _print_urls(plat)
    click.echo(
        f"running in the background, supervised by pid {proc.pid} (restarts a service that exits or stops answering): "
        "`coelho status`, `coelho logs SERVICE`, `coelho down`"
    )


def _down_supervised(plat: Platform, timeout: float = 300.0) -> list[str]:
    """Stop the platform: its supervisor first (it stops supervising, then every service), then what is left."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave half the platform running
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sup = plat.supervisor()
    if sup is not None and int(sup["pid"]) != os.getpid():
        click.echo(f"supervisor     stopping (pid {sup['pid']}): it stops every service")
        with contextlib.suppress(psutil.Error):
            psutil.Process(int(sup["pid"])).terminate()
        deadline = time.monotonic() + timeout
        while plat.supervisor() is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if plat.supervisor() is not None:
            click.echo(f"warning: the supervisor (pid {sup['pid']}) did not stop in {timeout:.0f} s: SIGKILL", err=True)
            with contextlib.suppress(psutil.Error):
                psutil.Process(int(sup["pid"])).kill()
            plat.set_supervisor(None)
    problems = plat.stop() if plat.entries() else []
    for line in problems:
        click.echo(f"warning: {line}", err=True)
    click.echo("stopped" if not problems else "stopped, with the warnings above")
    return problems


@main.command()
@click.option("--purge", is_flag=True, help="Also delete the data directory (topics, models, Redis, S3 data).")
def down(purge: bool) -> None:
    """Stop every process the platform started (by PID) and check that the ports are free."""
    plat = _platform()
    if not plat.entries() and plat.supervisor() is None:
        click.echo(f"nothing running in {plat.settings.data_dir}")
        for line in _elsewhere(plat):
            click.echo(line)
    elif _down_supervised(plat):
        sys.exit(1)
    if purge:
        plat.purge()
        click.echo(f"deleted {plat.settings.data_dir}")


def _elsewhere(plat: Platform) -> list[str]:
    """Where a platform runs when it is not in this data directory (other data dirs, or who holds the ports)."""
    lines = []
    others = other_platforms(plat.settings)
    for other in others:
        ports = f" (it holds ports {', '.join(other['ports'])})" if other.get("ports") else ""
        lines.append(
            f"but a platform runs with COELHO_DATA_DIR={other['data_dir']}{ports}: "
            f"{', '.join(other['services']) or 'its processes'}; "
            f"`COELHO_DATA_DIR={other['data_dir']} coelho status` (or `... coelho down`)"
        )
    if not others:
        held = [(n, p) for n, p in plat.settings.ports.items() if port_in_use(plat.settings.host, p)]
        for name, port in held:
            lines.append(f"but port {port} ({name}) is in use{port_holder(port)}: not by a platform coelho knows")
    return lines


@main.command()
@click.argument("service")
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait until it is healthy again.")
def restart(service: str, timeout: float) -> None:
    """Stop SERVICE and start it again (through the supervisor when one runs), then wait until it is healthy."""
    plat = _platform()
    entry = plat.entries().get(service)
    if service not in plat.by_name:
        raise click.ClickException(f"no such service {service!r} (known: {', '.join(plat.by_name)})")
    if entry is None:
        raise click.ClickException(f"{service} is not running in {plat.settings.data_dir} (coelho up starts it)")
    if plat.supervisor() is None:
        try:
            took = plat.restart(service)
        except StartError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"{service} restarted, healthy in {took:.1f} s")
        return
    from coelho.supervisor import request_restart

    old = int(entry["pid"])
    t0 = time.monotonic()
    request_restart(plat, service)
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        now = plat.entries().get(service, {})
        if int(now.get("pid", old)) != old and now.get("phase") == "running" and plat.healthy(service):
            click.echo(f"{service} restarted (pid {old} -> {now['pid']}), healthy in {time.monotonic() - t0:.1f} s")
            return
        time.sleep(0.2)
    raise click.ClickException(f"{service} not healthy {timeout:.0f} s after the restart; see `coelho logs {service}`")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(as_json: bool) -> None:
    """Show each service: PID, address, healthy, URL (exit code 1 when something is unhealthy or nothing runs)."""
    plat = _platform(echo=False)
    st = plat.status(with_rss=as_json)
    all_ok = bool(st) and all(x.healthy for x in st.values())
    if as_json:
        click.echo(
            json.dumps(
                {
                    "data_dir": str(plat.settings.data_dir),
                    "healthy": all_ok,
                    "supervisor": plat.supervisor(),
                    "elsewhere": other_platforms(plat.settings) if not st else [],
                    "services": {name: x.to_json() for name, x in st.items()},
                }
            )
        )
    elif not st:
        click.echo(f"not running (no services recorded in {plat.state_path})")
        for line in _elsewhere(plat):
            click.echo(line)
    else:
        from coelho.supervisor import exit_text

        rows = [("SERVICE", "PID", "ADDRESS", "HEALTHY", "RESTARTS", "LAST EXIT", "URL")]
        for name, x in st.items():
            health = "yes" if x.healthy else (f"NO ({x.phase})" if not x.running else "NO")
            if x.running and x.phase == "starting":
                health = "NO (starting again)"
            rows.append((name, str(x.pid or "-"), x.address, health, str(x.restarts), exit_text(x.last_exit), x.url))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        sup = plat.supervisor()
        click.echo(
            f"supervisor: pid {sup['pid']} (restarts a service that exits or stops answering)"
            if sup
            else "supervisor: none (a service that exits stays down: `coelho up` brings it back)"
        )
    sys.exit(0 if all_ok else 1)


@main.command()
@click.argument("service")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines (Ctrl-C to stop).")
@click.option("--lines", "-n", default=200, show_default=True, help="How many last lines to print (0: all).")
def logs(service: str, follow: bool, lines: int) -> None:
    """Print a service's log (<data_dir>/logs/SERVICE.log)."""
    plat = _platform(echo=False)
    path = plat.log_path(service)
    if not path.exists():
        known = sorted(p.stem for p in plat.settings.log_dir.glob("*.log")) if plat.settings.log_dir.exists() else []
        raise click.ClickException(f"no log for {service!r} at {path} (logs exist for: {', '.join(known) or 'none'})")
    with path.open("r", errors="replace") as fh:
        content = fh.readlines()
        for line in content[-lines:] if lines > 0 else content:
            click.echo(line, nl=False)
        if not follow:
            return
        _stop_on_interrupt()
        try:
            while True:
                line = fh.readline()
                if line:
                    click.echo(line, nl=False)
                else:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            return


if __name__ == "__main__":
    main()
