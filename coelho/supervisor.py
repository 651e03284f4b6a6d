"""The supervisor: restarts a service of the platform that exits or is killed, as Kubernetes does for a pod with
`restartPolicy: Always`.

Each exit is recorded in <data_dir>/run/state.json (exit code or signal, when, how long it ran) and the service is
started again after an exponential backoff (base, 2 x base, 4 x base ... capped). A service that ran at least
`reset_after` seconds starts again from the base delay; one that crashed `crash_loop_after` times in a row without
staying up is reported as crash-looping (CrashLoopBackOff: a log line, `coelho status`) and retried only at the
capped delay, never in a tight loop. The same loop rotates the log files (size-bounded: `log_files` files of
`log_bytes` each) and serves `coelho restart SERVICE` requests.

A liveness check, as a Kubernetes liveness probe: a thread asks every running service its liveness check (the row's
`liveness`, else its health check) every `probe_period` seconds. A service whose check has failed continuously for
`unresponsive_after` seconds and at least `unresponsive_probes` times in a row (hung, stopped, deadlocked: alive
but not answering) is killed with SIGKILL by PID and restarted like any exit, with the backoff; its last exit says
"unresponsive". Not counted: failures before the service first answered since its launch (within its start-up
timeout), while one of its dependencies fails its own check, or after a gap in the checker's own schedule (the
machine, not the service, stalled).

One supervisor per platform: `coelho up` runs it in its own process (a thread beside the live summary), `coelho up
--detach` as a detached process (`python -m coelho.supervisor`). Its PID is recorded in the state file; `coelho
down` signals it (SIGTERM) and waits: the supervisor stops supervising first, then stops every service, so a restart
in progress never races `down`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

from coelho.processes import is_alive, signal_group
from coelho.runtime import Echo, Platform, StartError


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff and crash-loop thresholds (COELHO_RESTART_BACKOFF="base,cap" seconds overrides the first two).

    >>> p = RestartPolicy(base=1.0, cap=10.0)
    >>> [p.delay(n) for n in range(1, 7)]
    [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    """

    base: float = 1.0  # delay before the first restart
    cap: float = 60.0  # longest delay (Kubernetes: 5 min; shorter here, one machine)
    reset_after: float = 60.0  # ran this long: the next crash starts from `base` again
    crash_loop_after: int = 3  # consecutive quick crashes before the service is reported as crash-looping
    log_bytes: int = 10 * 1024 * 1024  # a log file is rotated past this size ...
    log_files: int = 3  # ... keeping this many older files (SERVICE.log.1 .. SERVICE.log.N)
    interval: float = 0.25  # seconds between two looks at the processes
    # liveness (COELHO_UNRESPONSIVE_AFTER="seconds", 0 turns it off): a service whose liveness check fails for this
    # long, at least `unresponsive_probes` checks in a row, is killed and restarted (Kubernetes: 3 x 10 s)
    unresponsive_after: float = 30.0
    unresponsive_probes: int = 3
    probe_period: float = 5.0  # seconds between two liveness checks of a service
    probe_timeout: float = 5.0  # a check not answered within this long failed (generous: a loaded 2-core machine)

    def delay(self, consecutive: int) -> float:
        """Seconds to wait before restarting after the `consecutive`-th crash in a row (1-based)."""
        return float(min(self.cap, self.base * 2 ** max(0, consecutive - 1)))

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> RestartPolicy:
        """
        >>> RestartPolicy.from_environ({"COELHO_RESTART_BACKOFF": "0.5,8"}).cap
        8.0
        >>> RestartPolicy.from_environ({"COELHO_UNRESPONSIVE_AFTER": "0"}).unresponsive_after  # off
        0.0
        """
        env = os.environ if environ is None else environ
        policy = cls()
        raw = env.get("COELHO_RESTART_BACKOFF", "")
        if raw:
            base, _, cap = raw.partition(",")
            policy = replace(policy, base=float(base), cap=float(cap or cls.cap))
        if env.get("COELHO_UNRESPONSIVE_AFTER"):
            policy = replace(policy, unresponsive_after=float(env["COELHO_UNRESPONSIVE_AFTER"]))
        return policy

    @property
    def schedule_gap(self) -> float:
        """A pause this long between two rounds of liveness checks means the checker itself stalled.

        >>> RestartPolicy().schedule_gap
        20.0
        """
        return 2 * (self.probe_period + self.probe_timeout)


def describe_exit(code: int | None) -> dict[str, Any]:
    """A Popen return code as {"code", "signal"} (negative: killed by that signal; None: not our child).

    >>> describe_exit(-9)
    {'code': None, 'signal': 'SIGKILL'}
    >>> describe_exit(3)
    {'code': 3, 'signal': None}
    """
    if code is None:
        return {"code": None, "signal": None}
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return {"code": None, "signal": name}
    return {"code": code, "signal": None}


def exit_text(last: Mapping[str, Any] | None) -> str:
    """One short phrase for a recorded exit.

    >>> exit_text({"code": 1, "signal": None, "at": 0})
    'exit code 1 at 00:00:00'
    >>> exit_text(None)
    '-'
    >>> exit_text({"code": None, "signal": "SIGKILL", "at": 0, "reason": "unresponsive", "failing_for": 31.2})
    'unresponsive for 31 s: killed (SIGKILL) at 00:00:00'
    """
    if not last:
        return "-"
    if last.get("reason") == "unresponsive":
        when = time.strftime("%H:%M:%S", time.gmtime(float(last.get("at", 0))))
        return f"unresponsive for {float(last.get('failing_for', 0)):.0f} s: killed (SIGKILL) at {when}"
    what = (
        f"killed by {last['signal']}"
        if last.get("signal")
        else f"exit code {last['code']}"
        if last.get("code") is not None
        else "found dead (not started by this supervisor)"
    )
    when = time.strftime("%H:%M:%S", time.gmtime(float(last.get("at", 0))))
    return f"{what} at {when}"


def rotate_log(path: Path, max_bytes: int, keep: int) -> bool:
    """Rotate `path` when it is larger than max_bytes: SERVICE.log -> .1 -> .2 ... (at most `keep` old files).

    The running service keeps its file descriptor (opened in append mode): the file is copied, then truncated in
    place, so the service writes on at the start of the emptied file (lines written between the copy and the
    truncation, a few microseconds, are lost). Returns True when it rotated.
    """
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except OSError:
        return False
    for i in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{i + 1}"))
    if keep > 0:
        shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    with path.open("r+b") as fh:
        fh.truncate(0)
    return True


def restart_request_dir(plat: Platform) -> Path:
    return plat.settings.run_dir / "restart"


def request_restart(plat: Platform, name: str) -> None:
    """Ask the running supervisor to restart `name` (it picks the request up within its interval)."""
    d = restart_request_dir(plat)
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(str(time.time()))


@dataclass
class Streak:
    """Liveness checks of one process (pid) of a service: failures in a row, since when, answered once yet."""

    pid: int
    failures: int = 0
    since: float | None = None  # when the first failure of the current run of failures was seen
    answered: bool = False  # passed a check since this process started


@dataclass
class Liveness:
    """Which services are unresponsive, from their liveness checks (no processes, no clock: the caller gives both).

    >>> lv = Liveness(after=30.0, probes=3)
    >>> lv.observe("learn", pid=7, ok=True, now=0.0, grace_until=120.0)
    >>> for t in (5.0, 10.0, 20.0): lv.observe("learn", 7, False, t, 120.0)
    >>> lv.unresponsive("learn", 20.0)  # 3 failures, but only for 15 s
    False
    >>> lv.observe("learn", 7, False, 36.0, 120.0); lv.unresponsive("learn", 36.0)
    True
    >>> lv.observe("learn", 7, True, 37.0, 120.0); lv.unresponsive("learn", 37.0)  # one answer ends the run
    False

    A process that never answered is not judged before its start-up time is over:
    >>> for t in (0.0, 20.0, 40.0, 60.0): lv.observe("mlflow", 9, False, t, grace_until=90.0)
    >>> lv.unresponsive("mlflow", 60.0), lv.streaks["mlflow"].failures
    (False, 0)
    """

    after: float = 30.0
    probes: int = 3
    streaks: dict[str, Streak] = field(default_factory=dict)

    def observe(self, name: str, pid: int, ok: bool, now: float, grace_until: float) -> None:
        streak = self.streaks.get(name)
        if streak is None or streak.pid != pid:  # a new process: nothing it did before counts
            streak = self.streaks[name] = Streak(pid)
        if ok:
            streak.answered, streak.failures, streak.since = True, 0, None
        elif streak.answered or now >= grace_until:
            streak.failures += 1
            if streak.since is None:
                streak.since = now

    def pause(self, name: str) -> None:
        """Forget the current run of failures (a dependency is down, or the checker itself stalled)."""
        streak = self.streaks.get(name)
        if streak is not None:
            streak.failures, streak.since = 0, None

    def pause_all(self) -> None:
        for name in list(self.streaks):
            self.pause(name)

    def forget(self, name: str) -> None:
        self.streaks.pop(name, None)

    def failing_for(self, name: str, now: float) -> float:
        streak = self.streaks.get(name)
        return 0.0 if streak is None or streak.since is None else now - streak.since

    def unresponsive(self, name: str, now: float) -> bool:
        streak = self.streaks.get(name)
        return (
            self.after > 0
            and streak is not None
            and streak.failures >= self.probes
            and self.failing_for(name, now) >= self.after
        )


class Supervisor:
    """Watches the services of one Platform and restarts those that exit; see the module docstring."""

    def __init__(self, plat: Platform, policy: RestartPolicy | None = None, echo: Echo | None = None) -> None:
        self.plat = plat
        self.policy = policy or RestartPolicy.from_environ()
        self.echo: Echo = echo or plat.echo
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_rotation = 0.0
        # per service: consecutive quick crashes, when to restart, when the current process was (re)launched
        self._consecutive: dict[str, int] = {}
        self._due: dict[str, float] = {}
        self._launched_at: dict[str, float] = {}
        self._exit_seen_at: dict[str, float] = {}
        self._awaiting_health: set[str] = set()
        # liveness: the checks' verdicts, and what to add to the exit record of a service killed as unresponsive
        self.liveness = Liveness(self.policy.unresponsive_after, self.policy.unresponsive_probes)
        self._unresponsive: dict[str, dict[str, Any]] = {}
        self._checker: threading.Thread | None = None
        self.unresponsive_kills: dict[str, int] = {}  # per service, since this supervisor started

    # --- lifecycle ----------------------------------------------------------------------------------------------
    def register(self) -> None:
        """Record this process as the platform's supervisor (state.json "supervisor")."""
        me = psutil.Process()
        self.plat.set_supervisor({"pid": me.pid, "create_time": me.create_time(), "started_at": time.time()})

    def unregister(self) -> None:
        current = self.plat.supervisor()
        if current is not None and int(current["pid"]) == os.getpid():
            self.plat.set_supervisor(None)

    def start_thread(self) -> None:
        """Supervise in a background thread of this process (stop with stop())."""
        self._thread = threading.Thread(target=self.run, name="coelho-supervisor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop supervising (a restart in progress finishes first): after this, nothing is restarted."""
        self.stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def run(self) -> None:
        if self.policy.unresponsive_after > 0 and self._checker is None:
            self._checker = threading.Thread(target=self._check_liveness, name="coelho-liveness", daemon=True)
            self._checker.start()
        while not self.stopping.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 — the supervisor must outlive any one failure
                self.echo(f"supervisor: {type(exc).__name__}: {exc}")
            self.stopping.wait(self.policy.interval)
        if self._checker is not None:
            self._checker.join(self.policy.probe_timeout + 1.0)

    # --- one look at everything ---------------------------------------------------------------------------------
    def tick(self) -> None:
        with self.plat._lock:
            if self.stopping.is_set():
                return
            now = time.time()
            entries = self.plat.entries()
            for name in self._take_restart_requests():
                if name in entries:
                    self._restart_now(name, entries[name])
            entries = self.plat.entries()
            for name, entry in entries.items():
                if name not in self.plat.by_name or self.stopping.is_set():
                    continue
                entry.setdefault("name", name)
                if name in self._due:
                    if now >= self._due[name]:
                        self._relaunch(name, entry)
                    continue
                if self._exited(name, entry, now):
                    continue
                if name in self._awaiting_health:
                    self._check_recovered(name, entry)
            if now >= self._next_rotation:
                self._next_rotation = now + 5.0
                self.rotate_logs()

    def _exited(self, name: str, entry: dict[str, Any], now: float) -> bool:
        """Record an exit of `name` and schedule its restart; False while it runs."""
        proc = self.plat._procs.get(name)
        code: int | None = None
        if proc is not None and proc.pid == int(entry["pid"]):
            code = proc.poll()
            if code is None and is_alive(entry, proc):
                return False
            if code is None:  # dead, but another thread is reaping it (Platform.kill waits): take its code from there
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = proc.wait(timeout=2)
        elif is_alive(entry):
            return False
        launched = self._launched_at.get(name, float(entry.get("started_at") or now))
        ran_for = max(0.0, now - launched)
        signal_group(entry, signal.SIGKILL)  # what is left of the group (workers of a dead leader)
        self.liveness.forget(name)
        why = self._unresponsive.pop(name, {})
        quick = ran_for < self.policy.reset_after
        consecutive = self._consecutive.get(name, 0) + 1 if quick else 1
        self._consecutive[name] = consecutive
        delay = self.policy.delay(consecutive)
        crash_loop = consecutive >= self.policy.crash_loop_after
        last = {**describe_exit(code), "at": now, "ran_for": round(ran_for, 2), **why}
        entry.update(
            last_exit=last,
            phase="crash-loop" if crash_loop else "backoff",
            next_restart_at=now + delay,
            consecutive_crashes=consecutive,
        )
        self.plat._update_entry(name, entry)
        self._due[name] = now + delay
        self._exit_seen_at[name] = now
        self._awaiting_health.discard(name)
        self.plat._procs.pop(name, None)
        if crash_loop:
            self.echo(
                f"{name:<14} CRASH-LOOPING: {exit_text(last)} after {ran_for:.1f} s, {consecutive} crashes in a row; "
                f"next restart in {delay:.0f} s; see {self.plat.log_path(name)} "
                f"(last line: {self.plat._last_log_line(name) or '-'})"
            )
        else:
            self.echo(f"{name:<14} {exit_text(last)} after {ran_for:.1f} s: restarting in {delay:.1f} s")
        return True

    # --- liveness ---------------------------------------------------------------------------------------------
    def _check_liveness(self) -> None:
        """The liveness thread: a round of checks every `probe_period` s, in parallel (a hung service costs its
        check's timeout, not the others'), then the verdicts."""
        policy = self.policy
        last_round: float | None = None
        with concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="coelho-liveness") as pool:
            while not self.stopping.wait(policy.probe_period if last_round is not None else 0.0):
                now = time.monotonic()
                if last_round is not None and now - last_round > policy.schedule_gap:
                    self.liveness.pause_all()  # this process was not scheduled: its checks say nothing of others
                last_round = now
                try:
                    self.check_liveness_once(pool)
                except Exception as exc:  # noqa: BLE001 — the checker must outlive any one failure
                    self.echo(f"supervisor: liveness: {type(exc).__name__}: {exc}")

    def check_liveness_once(self, pool: concurrent.futures.Executor) -> list[str]:
        """One round: check every running service, judge, kill the unresponsive. Returns the names killed."""
        settings = self.plat.settings
        entries = self.plat.entries()
        targets: dict[str, tuple[Any, dict[str, Any]]] = {}
        for name, entry in entries.items():
            svc = self.plat.by_name.get(name)
            if svc is None or name in self._due:
                continue
            entry.setdefault("name", name)
            if is_alive(entry, self.plat._procs.get(name)):  # an exit is the main loop's
                targets[name] = (svc, entry)
        timeout = self.policy.probe_timeout
        futures = {
            name: pool.submit(svc.liveness_check.check, settings, svc.port, timeout)
            for name, (svc, _entry) in targets.items()
        }
        answered = {name: _result(future) for name, future in futures.items()}
        now = time.monotonic()
        killed: list[str] = []
        for name, (svc, entry) in targets.items():
            deps = [d for d in svc.dependencies(settings) if d in entries]
            if any(not answered.get(d, False) for d in deps):
                self.liveness.pause(name)  # its dependency is down or restarting: its own failures are not its own
                continue
            # start-up: until it was healthy once since its launch, within its start-up timeout
            launched = self._launched_at.get(name, float(entry.get("started_at") or time.time()))
            started = entry.get("ready_in") is not None and name not in self._awaiting_health
            grace_until = now if started else now + (launched + svc.startup_timeout - time.time())
            self.liveness.observe(name, int(entry["pid"]), answered[name], now, grace_until)
            if self.liveness.unresponsive(name, now) and self._kill_unresponsive(name, now):
                killed.append(name)
        return killed

    def _kill_unresponsive(self, name: str, now: float) -> bool:
        """SIGKILL the service's process by PID (the main loop then records the exit and restarts it)."""
        streak = self.liveness.streaks.get(name)  # (the main loop forgets a service that exited meanwhile)
        if streak is None:
            return False
        failing_for = self.liveness.failing_for(name, now)
        with self.plat._lock:
            entry = self.plat.entries().get(name)
            if self.stopping.is_set() or entry is None or int(entry["pid"]) != streak.pid or name in self._due:
                return False
            entry.setdefault("name", name)
            if not is_alive(entry, self.plat._procs.get(name)):
                return False
            self._unresponsive[name] = {
                "reason": "unresponsive",
                "failing_for": round(failing_for, 1),
                "failed_checks": streak.failures,
            }
            # (if it exited meanwhile, the main loop records that exit, marked unresponsive all the same)
            with contextlib.suppress(ProcessLookupError):
                os.kill(streak.pid, signal.SIGKILL)
            self.liveness.forget(name)
            self.unresponsive_kills[name] = self.unresponsive_kills.get(name, 0) + 1
        check = self.plat.by_name[name].liveness_check.describe(self.plat.settings, self.plat.by_name[name].port)
        self.echo(
            f"{name:<14} UNRESPONSIVE: {check} failed for {failing_for:.0f} s ({streak.failures} checks in a row); "
            f"killed (SIGKILL pid {streak.pid}), restarting"
        )
        return True

    def _relaunch(self, name: str, entry: dict[str, Any]) -> None:
        svc = self.plat.by_name[name]
        self._due.pop(name, None)
        restarts = int(entry.get("restarts", 0)) + 1
        kept: dict[str, Any] = {k: entry[k] for k in ("last_exit", "consecutive_crashes") if k in entry}
        try:
            argv = svc.argv(self.plat.settings)
            self.plat._launch(svc, argv)
        except Exception as exc:  # noqa: BLE001 — counted as one more crash
            now = time.time()
            consecutive = self._consecutive.get(name, 0) + 1
            self._consecutive[name] = consecutive
            delay = self.policy.delay(consecutive)
            entry.update(
                restarts=restarts,
                phase="crash-loop" if consecutive >= self.policy.crash_loop_after else "backoff",
                last_exit={"code": None, "signal": None, "at": now, "ran_for": 0.0, "error": str(exc)[:200]},
                next_restart_at=now + delay,
            )
            self.plat._update_entry(name, entry)
            self._due[name] = now + delay
            self.echo(f"{name:<14} could not be started again ({exc}); next try in {delay:.1f} s")
            return
        self._launched_at[name] = time.time()
        fresh = self.plat.entries().get(name, {})
        fresh.update(kept, restarts=restarts, phase="starting", next_restart_at=None)
        self.plat._update_entry(name, fresh)
        self._awaiting_health.add(name)
        self._exit_seen_at.setdefault(name, time.time())

    def _check_recovered(self, name: str, entry: dict[str, Any]) -> None:
        svc = self.plat.by_name[name]
        if not svc.health.check(self.plat.settings, svc.port, timeout=0.5):
            return
        if svc.after_start is not None:
            try:
                svc.after_start(self.plat.settings)
            except Exception:  # noqa: BLE001 — tried again on the next look
                return
        self._awaiting_health.discard(name)
        since = self._exit_seen_at.pop(name, self._launched_at.get(name, time.time()))
        recovered = round(time.time() - since, 2)
        entry.update(phase="running", recovered_in=recovered, ready_in=round(time.time() - self._launched_at[name], 2))
        self.plat._update_entry(name, entry)
        self.echo(f"{name:<14} healthy again {recovered:.1f} s after it stopped (restarts: {entry.get('restarts', 0)})")

    def _take_restart_requests(self) -> list[str]:
        d = restart_request_dir(self.plat)
        if not d.is_dir():
            return []
        names = []
        for path in d.iterdir():
            names.append(path.name)
            with contextlib.suppress(OSError):
                path.unlink()
        return names

    def _restart_now(self, name: str, entry: dict[str, Any]) -> None:
        """`coelho restart NAME`: stop it (SIGTERM, then SIGKILL) and start it again at once, backoff reset."""
        self.echo(f"{name:<14} restart requested")
        entry.setdefault("name", name)
        self.plat._stop_group(name, entry)
        self._consecutive[name] = 0
        self._exit_seen_at[name] = time.time()
        self.plat._procs.pop(name, None)
        self._due.pop(name, None)
        self._relaunch(name, entry)

    # --- logs -------------------------------------------------------------------------------------------------
    def rotate_logs(self) -> list[Path]:
        rotated: list[Path] = []
        log_dir = self.plat.settings.log_dir
        if not log_dir.is_dir():
            return rotated
        for path in log_dir.glob("*.log"):
            if rotate_log(path, self.policy.log_bytes, self.policy.log_files):
                rotated.append(path)
        return rotated


def _result(future: concurrent.futures.Future[bool]) -> bool:
    """A check's verdict: an error in the check itself (not an answer) counts as a failure."""
    try:
        return bool(future.result())
    except Exception:  # noqa: BLE001
        return False


# --- the detached supervisor (`coelho up --detach`) ---------------------------------------------------------------


def _echo_flush(line: str) -> None:
    print(line, flush=True)


def detached_main(argv: list[str] | None = None) -> int:
    """Start the platform, then supervise it until SIGTERM (from `coelho down`), then stop everything.

    Prints what `coelho up` prints (its log is <data_dir>/logs/supervisor.log, which `up --detach` relays)."""
    from coelho.settings import Settings

    args = sys.argv[1:] if argv is None else argv
    producers = "--no-producers" not in args
    plat = Platform(Settings.load(), echo=_echo_flush)
    sup = Supervisor(plat, echo=_echo_flush)

    supervising = threading.Event()

    def _term(signum: int, frame: Any) -> None:
        if supervising.is_set():
            sup.stopping.set()  # the loop ends after its current look: no restart is cut in half
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    sup.register()
    t0 = time.monotonic()
    try:
        try:
            plat.start(None, producers=producers)
        except StartError as exc:
            print(f"error: {exc}", flush=True)
            print("nothing was left running from this attempt.", flush=True)
            return 1
        print(f"all {len(plat.entries())} services healthy in {time.monotonic() - t0:.1f} s", flush=True)
        supervising.set()
        sup.run()
    except KeyboardInterrupt:
        sup.stopping.set()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if sup.stopping.is_set():
                print("supervisor: stopping every service", flush=True)
                problems = plat.stop()
                for line in problems:
                    print(f"warning: {line}", flush=True)
                print("stopped", flush=True)
        finally:
            sup.unregister()
    return 0


def spawn_detached(plat: Platform, producers: bool) -> tuple[subprocess.Popen[bytes], Path, int]:
    """Start `python -m coelho.supervisor` in its own session; returns it, its log and the log offset to read from."""
    log = plat.settings.log_dir / "supervisor.log"
    plat.settings.log_dir.mkdir(parents=True, exist_ok=True)
    offset = log.stat().st_size if log.exists() else 0
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "coelho.supervisor", *([] if producers else ["--no-producers"])],
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=str(Path(__file__).resolve().parent.parent),
            env={**os.environ, **plat.settings.to_environ(), "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
    return proc, log, offset


if __name__ == "__main__":
    sys.exit(detached_main())
