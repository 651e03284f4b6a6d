"""The embedded runtime: starts, watches and stops the platform's processes (see coelho/services.py for the table).

Every child runs in its own process group (its own session), writes stdout/stderr to <data_dir>/logs/<name>.log and
binds 127.0.0.1. What is running is recorded in <data_dir>/run/state.json (PID + process start time, so a reused
PID is never mistaken for ours); `coelho down` in another shell stops exactly those processes by PID: SIGTERM to
the group, SIGKILL after the row's stop timeout, then it checks that the ports are free.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from coelho.engines import BinaryMissing
from coelho.platform_registry import mark_running
from coelho.processes import group_members, is_alive, port_holder, port_in_use, signal_group
from coelho.services import SERVICES, Service
from coelho.settings import Settings

Echo = Callable[[str], None]


class StartError(Exception):
    """A service could not be started; str() is one line naming the service and what to do."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.message = message


@dataclass
class ServiceStatus:
    name: str
    pid: int | None
    running: bool
    healthy: bool
    address: str
    url: str
    ready_in: float | None = None
    rss_bytes: int | None = None
    restarts: int = 0  # times the supervisor started it again (coelho/supervisor.py)
    last_exit: dict[str, Any] | None = None  # {"code", "signal", "at", "ran_for"} of its last exit
    phase: str = "running"  # running | starting (again) | backoff | crash-loop

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _phase(running: bool, recorded: Any) -> str:
    """What `status` shows: a live process is running (or starting again); a dead one waits for its restart
    (backoff, crash-loop) or, with no supervisor to restart it, has exited.

    >>> _phase(False, "running"), _phase(False, "crash-loop"), _phase(True, None)
    ('exited', 'crash-loop', 'running')
    """
    if running:
        return "starting" if recorded == "starting" else "running"
    return str(recorded) if recorded in ("backoff", "crash-loop") else "exited"


# --- the platform --------------------------------------------------------------------------------------------------


class Platform:
    """One platform instance (one Settings: ports + data dir). Safe to create in several processes at once:
    the state file is the shared truth, the Popen handles only help reap children this process started."""

    def __init__(self, settings: Settings, services: list[Service] | None = None, echo: Echo | None = None) -> None:
        self.settings = settings
        self.services = list(services if services is not None else SERVICES)
        self.by_name = {svc.name: svc for svc in self.services}
        self.echo: Echo = echo or (lambda line: None)
        # Told while `start` waits (about ten times a second): the services healthy so far and those still starting
        # or waiting for a dependency, in plan order (`coelho up`'s progress line, coelho/progress.py).
        self.progress: Callable[[list[str], list[str]], None] | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.RLock()
        self._said: set[str] = set()

    # --- paths / state ----------------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.settings.run_dir / "state.json"

    def log_path(self, name: str) -> Path:
        return self.settings.log_dir / f"{name}.log"

    def _load_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {"services": {}}
        if not isinstance(state.get("services"), dict):
            state["services"] = {}
        return state

    def _save_state(self, state: dict[str, Any]) -> None:
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_path)
        mark_running(self.settings.data_dir, bool(state.get("services") or state.get("supervisor")))

    def _update_entry(self, name: str, entry: dict[str, Any] | None) -> None:
        from coelho.prometheus import register_target, unregister_target

        if entry is None:
            unregister_target(self.settings, name)
        else:
            register_target(self.settings, name)
        with self._lock:
            state = self._load_state()
            if entry is None:
                state["services"].pop(name, None)
            else:
                state["services"][name] = entry
            state["data_dir"] = str(self.settings.data_dir)
            self._save_state(state)

    def supervisor(self) -> dict[str, Any] | None:
        """The live supervisor of this platform ({"pid", "create_time", "started_at"}), else None."""
        entry = self._load_state().get("supervisor")
        return entry if isinstance(entry, dict) and is_alive(entry) else None

    def set_supervisor(self, entry: dict[str, Any] | None) -> None:
        with self._lock:
            state = self._load_state()
            if entry is None:
                state.pop("supervisor", None)
            else:
                state["supervisor"] = entry
            state["data_dir"] = str(self.settings.data_dir)
            self._save_state(state)

    def entries(self) -> dict[str, dict[str, Any]]:
        """The services the state file lists (started and not stopped), by name."""
        return dict(self._load_state()["services"])

    # --- process identity (coelho/processes.py) ----------------------------------------------------------------
    def _alive(self, entry: dict[str, Any] | None) -> bool:
        return is_alive(entry, self._procs.get(entry.get("name", "")) if entry else None)

    def running(self, name: str) -> bool:
        entry = self.entries().get(name)
        if entry is not None:
            entry.setdefault("name", name)
        return self._alive(entry)

    def pid(self, name: str) -> int | None:
        entry = self.entries().get(name)
        return int(entry["pid"]) if entry else None

    def healthy(self, name: str) -> bool:
        svc = self.by_name[name]
        return self.running(name) and svc.health.check(self.settings, svc.port)

    def check_health(self, names: Iterable[str], timeout: float = 2.0) -> dict[str, bool]:
        """Health checks of several services at once (in threads: one slow service does not delay the others)."""
        svcs = [self.by_name[n] for n in names if n in self.by_name]
        if not svcs:
            return {}
        with ThreadPoolExecutor(max_workers=min(16, len(svcs))) as pool:
            results = pool.map(lambda svc: svc.health.check(self.settings, svc.port, timeout=timeout), svcs)
            return {svc.name: ok for svc, ok in zip(svcs, results, strict=True)}

    # --- planning ---------------------------------------------------------------------------------------------
    def plan(self, names: Iterable[str] | None = None, *, producers: bool = True) -> list[Service]:
        """The services to run for `names` (None: the whole platform) plus their dependencies, in start order.

        Every row planned must be runnable: a row whose Python module is missing raises StartError naming it, before
        anything starts (a platform that quietly leaves a service out looks healthy and is not).
        """
        everything = [s.name for s in self.services if producers or s.kind != "producer"]
        wanted = everything if names is None else list(names)
        for name in wanted:
            if name not in self.by_name:
                raise StartError(name, f"no such service (known: {', '.join(self.by_name)})")
        chosen: dict[str, Service] = {}

        def visit(name: str) -> None:
            if name in chosen:
                return
            svc = self.by_name.get(name)
            if svc is None:
                return
            if not svc.available():
                raise StartError(
                    name,
                    f"python module {svc.module} is missing, so `python -m {svc.module}` cannot run; restore the "
                    f"module or remove the {name!r} row from coelho/services.py",
                )
            for dep in svc.dependencies(self.settings):
                visit(dep)
            chosen[name] = svc

        for name in wanted:
            visit(name)
        return list(chosen.values())

    def _deps(self, svc: Service, planned: set[str]) -> list[str]:
        return [d for d in svc.dependencies(self.settings) if d in planned]

    def _say_once(self, key: str, line: str) -> None:
        if key not in self._said:
            self._said.add(key)
            self.echo(line)

    # --- start ------------------------------------------------------------------------------------------------
    def start(self, names: Iterable[str] | None = None, *, producers: bool = True) -> dict[str, float]:
        """Start `names` (None: everything) plus dependencies and wait until all are healthy. Idempotent.

        Returns {service: seconds until healthy} for the services started by this call. On any failure everything
        this call started is stopped again and StartError (one clear line) is raised.
        """
        with self._lock:
            planned = self.plan(names, producers=producers)
            return self._start(planned)

    def _preflight(self, planned: list[Service]) -> tuple[list[Service], dict[str, list[str]], set[str]]:
        """Services to launch (with their argv) and services skipped; raises StartError before anything starts."""
        todo: list[Service] = []
        argvs: dict[str, list[str]] = {}
        skipped: set[str] = set()
        for svc in planned:
            if self.running(svc.name):
                continue
            if any(d in skipped for d in svc.dependencies(self.settings)):
                skipped.add(svc.name)
                continue
            try:
                argvs[svc.name] = svc.argv(self.settings)
            except BinaryMissing as exc:
                if svc.optional:
                    self._say_once(f"missing:{svc.name}", f"{svc.name:<14} not started: {exc}")
                    skipped.add(svc.name)
                    continue
                raise StartError(svc.name, str(exc)) from None
            for port in svc.ports(self.settings):
                if port_in_use(self.settings.host, port):
                    raise StartError(
                        svc.name,
                        f"port {port} on {self.settings.host} is already in use{port_holder(port)}; "
                        f"stop that process (`coelho down` if it is an old platform) or move {svc.name} to another "
                        f"port: COELHO_PORT_{svc.port.upper()}=... or [ports] in coelho.toml",
                    )
            todo.append(svc)
        return todo, argvs, skipped

    def _launch(self, svc: Service, argv: list[str]) -> None:
        s = self.settings
        s.log_dir.mkdir(parents=True, exist_ok=True)
        s.run_dir.mkdir(parents=True, exist_ok=True)
        if svc.prepare is not None:
            svc.prepare(s)
        env = dict(os.environ)
        env.update(svc.env(s))
        log = self.log_path(svc.name).open("ab")
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(argv)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(Path(__file__).resolve().parent.parent),
                start_new_session=True,
            )
        except OSError as exc:
            raise StartError(svc.name, f"cannot execute {argv[0]}: {exc}") from None
        finally:
            log.close()
        self._procs[svc.name] = proc
        try:
            create_time = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            create_time = time.time()
        self._update_entry(
            svc.name,
            {
                "name": svc.name,
                "pid": proc.pid,
                "create_time": create_time,
                "argv": argv,
                "port": s.ports[svc.port],
                "ports": svc.ports(s),
                "started_at": time.time(),
                "ready_in": None,
            },
        )

    def _last_log_line(self, name: str) -> str:
        try:
            lines = [ln.strip() for ln in self.log_path(name).read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return lines[-1][:200] if lines else ""

    def _start(self, planned: list[Service]) -> dict[str, float]:
        todo, argvs, skipped = self._preflight(planned)
        planned_names = {svc.name for svc in planned}
        todo_names = {svc.name for svc in todo}
        ready: set[str] = set(skipped)
        begin = time.monotonic()
        # services that were running already are waited for (healthy) in dependency order like the new ones:
        # a dependent that went unready because a dependency died recovers once the dependency is back.
        watched: dict[str, float] = {
            svc.name: begin for svc in planned if svc.name not in todo_names and svc.name not in skipped
        }
        ready_in: dict[str, float] = {}
        after_error: dict[str, str] = {}
        started_here: list[str] = []
        try:
            while True:
                for svc in todo:
                    if svc.name in watched:
                        continue
                    if all(d in ready for d in self._deps(svc, planned_names)):
                        self._launch(svc, argvs[svc.name])
                        watched[svc.name] = time.monotonic()
                        started_here.append(svc.name)
                pending = [n for n in watched if n not in ready]
                if self.progress is not None:
                    shown = [svc.name for svc in planned if svc.name not in skipped]
                    self.progress([n for n in shown if n in ready], [n for n in shown if n not in ready])
                if not pending and all(svc.name in watched for svc in todo):
                    break
                health = self.check_health(pending)
                for name in pending:
                    svc = self.by_name[name]
                    elapsed = time.monotonic() - watched[name]
                    proc = self._procs.get(name) if name in started_here else None
                    code = proc.poll() if proc is not None else None
                    if code is not None:
                        raise StartError(
                            name,
                            f"exited with code {code} while starting; see {self.log_path(name)} "
                            f"(last line: {self._last_log_line(name) or '-'})",
                        )
                    if proc is None and not self.running(name):
                        raise StartError(name, f"stopped while the platform was starting; see {self.log_path(name)}")
                    if health[name]:
                        if svc.after_start is not None:
                            try:
                                svc.after_start(self.settings)
                            except Exception as exc:  # noqa: BLE001 — retried until the start timeout
                                after_error[name] = f"{type(exc).__name__}: {exc}"
                                if elapsed > svc.startup_timeout:
                                    raise StartError(name, f"healthy but setup failed: {after_error[name]}") from None
                                continue
                        ready.add(name)
                        if name not in started_here:
                            continue
                        ready_in[name] = round(elapsed, 2)
                        entry = self.entries().get(name)
                        if entry is not None:
                            entry["ready_in"] = ready_in[name]
                            self._update_entry(name, entry)
                        self.echo(f"{name:<14} ready in {elapsed:5.1f} s   {svc.url(self.settings)}")
                    elif elapsed > svc.startup_timeout:
                        what = "not healthy" if name in started_here else "running but not healthy"
                        raise StartError(
                            name,
                            f"{what} after {svc.startup_timeout:.0f} s "
                            f"({svc.health.describe(self.settings, svc.port)}); see {self.log_path(name)} "
                            f"(last line: {self._last_log_line(name) or '-'})",
                        )
                time.sleep(0.1)
        except BaseException:
            if started_here:
                self.stop(started_here)
            raise
        return ready_in

    def wait_healthy(self, name: str, timeout: float = 60.0) -> None:
        """Block until the (running) service answers its health check; StartError if it dies or times out."""
        svc = self.by_name[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if svc.health.check(self.settings, svc.port, timeout=0.5):
                return
            if not self.running(svc.name):
                raise StartError(svc.name, f"is not running any more; see {self.log_path(svc.name)}")
            time.sleep(0.1)
        raise StartError(svc.name, f"running but not healthy after {timeout:.0f} s; see {self.log_path(svc.name)}")

    # --- stop -------------------------------------------------------------------------------------------------
    def _levels(self, names: list[str]) -> list[list[str]]:
        """Group names so that dependents come before what they depend on (stop order)."""
        depth: dict[str, int] = {}

        def d(name: str, seen: frozenset[str] = frozenset()) -> int:
            if name in depth:
                return depth[name]
            svc = self.by_name.get(name)
            deps = [x for x in svc.dependencies(self.settings) if x not in seen] if svc else []
            depth[name] = 1 + max((d(x, seen | {name}) for x in deps), default=-1)
            return depth[name]

        for n in names:
            d(n)
        # Application processes (router, functions, producers, dashboard) go first, all at once: nothing in the
        # infrastructure depends on them. Then the infrastructure, dependents before their dependencies.
        top = max(depth.values(), default=0) + 1
        levels: dict[int, list[str]] = {}
        for n in names:
            svc = self.by_name.get(n)
            levels.setdefault(top if svc is None or svc.kind != "infra" else depth[n], []).append(n)
        return [levels[k] for k in sorted(levels, reverse=True)]

    def stop(self, names: Iterable[str] | None = None) -> list[str]:
        """Stop the named services (None: all the state file lists) by PID; returns problems (ports still used)."""
        with self._lock:
            entries = self.entries()
            targets = [n for n in (entries if names is None else names) if n in entries]
            problems: list[str] = []
            for level in self._levels(targets):
                for name in level:
                    entry = entries[name]
                    self.echo(f"{name:<14} stopping (pid {entry['pid']})")
                    signal_group(entry, signal.SIGTERM)
                deadline = {n: time.monotonic() + self._stop_timeout(n) for n in level}
                remaining = list(level)
                while remaining:
                    for name in list(remaining):
                        proc = self._procs.get(name)
                        if proc is not None:
                            proc.poll()
                        if not group_members(entries[name]):
                            remaining.remove(name)
                        elif time.monotonic() > deadline[name]:
                            self.echo(f"{name:<14} did not stop in {self._stop_timeout(name):.0f} s: SIGKILL")
                            signal_group(entries[name], signal.SIGKILL)
                            deadline[name] = time.monotonic() + 5
                    if remaining:
                        time.sleep(0.1)
                for name in level:
                    proc = self._procs.pop(name, None)
                    if proc is not None:
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            proc.wait(timeout=1)
                    self._update_entry(name, None)
            # Every port under one 5 s deadline (not 5 s each: a loaded machine would add minutes).
            ports_deadline = time.monotonic() + 5.0
            for name in targets:
                for port in entries[name].get("ports", []):
                    if not self._wait_port_free(int(port), max(0.0, ports_deadline - time.monotonic())):
                        problems.append(f"{name}: port {port} still in use{port_holder(int(port))}")
            return problems

    def _stop_group(self, name: str, entry: dict[str, Any]) -> None:
        """SIGTERM the service's process group, SIGKILL after its stop timeout; keeps the state entry."""
        signal_group(entry, signal.SIGTERM)
        deadline = time.monotonic() + self._stop_timeout(name)
        while group_members(entry):
            proc = self._procs.get(name)
            if proc is not None:
                proc.poll()
            if time.monotonic() > deadline:
                signal_group(entry, signal.SIGKILL)
                deadline = time.monotonic() + 5
            time.sleep(0.05)
        proc = self._procs.pop(name, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)

    def _stop_timeout(self, name: str) -> float:
        svc = self.by_name.get(name)
        return svc.stop_timeout if svc else 10.0

    def _wait_port_free(self, port: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while port_in_use(self.settings.host, port):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def purge(self) -> None:
        """Delete the data directory (call after stop)."""
        if self.settings.data_dir.exists():
            shutil.rmtree(self.settings.data_dir)

    # --- fault injection / restart ----------------------------------------------------------------------------
    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send `sig` to the service's process group (the process dies as in a crash); returns its PID.
        The state file keeps the entry, so `status` shows the service as not running / unhealthy."""
        entry = self.entries().get(name)
        if entry is None:
            raise StartError(name, "is not running")
        signal_group(entry, sig)
        proc = self._procs.get(name)
        if proc is not None and sig == signal.SIGKILL:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        return int(entry["pid"])

    def restart(self, name: str) -> float:
        """Stop (if needed) and start one service again; returns seconds until healthy."""
        with self._lock:
            self.stop([name])
            return self._start(self.plan([name])).get(name, 0.0)

    # --- status -----------------------------------------------------------------------------------------------
    def status(self, with_rss: bool = False) -> dict[str, ServiceStatus]:
        out: dict[str, ServiceStatus] = {}
        entries = self.entries()
        alive = {name: self._alive({**entry, "name": name}) for name, entry in entries.items()}
        health = self.check_health([n for n, ok in alive.items() if ok])
        for name, entry in entries.items():
            svc = self.by_name.get(name)
            running = alive[name]
            healthy = bool(running and health.get(name, False))
            port = self.settings.ports.get(svc.port) if svc else entry.get("port")
            out[name] = ServiceStatus(
                name=name,
                pid=int(entry["pid"]),
                running=running,
                healthy=healthy,
                address=f"{self.settings.host}:{port}",
                url=svc.url(self.settings) if svc else "",
                ready_in=entry.get("ready_in"),
                rss_bytes=self.rss(name) if with_rss and running else None,
                restarts=int(entry.get("restarts", 0)),
                last_exit=entry.get("last_exit"),
                phase=_phase(running, entry.get("phase")),
            )
        return out

    def processes(self, name: str) -> list[psutil.Process]:
        """The running processes of a service (its whole process group: a Granian function's worker too)."""
        entry = self.entries().get(name)
        return group_members(dict(entry, name=name)) if entry is not None else []

    def rss(self, name: str) -> int:
        """Resident memory of the service's whole process tree, in bytes."""
        total = 0
        for p in self.processes(name):
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total
