"""The supervisor: restarts a service of the platform that exits or is killed, as Kubernetes does for a pod with
`restartPolicy: Always`.

Each exit is recorded in <data_dir>/run/state.json (exit code or signal, when, how long it ran) and the service is
started again after an exponential backoff (base, 2 x base, 4 x base ... capped). A service that ran at least
`reset_after` seconds starts again from the base delay; one that crashed `crash_loop_after` times in a row without
staying up is reported as crash-looping (CrashLoopBackOff: a log line, `coelho status`) and retried only at the
capped delay, never in a tight loop. The same loop rotates the log files (size-bounded: `log_files` files of
`log_bytes` each) and serves `coelho restart SERVICE` requests.

One supervisor per platform: `coelho up` runs it in its own process (a thread beside the live summary), `coelho up
--detach` as a detached process (`python -m coelho.supervisor`). Its PID is recorded in the state file; `coelho
down` signals it (SIGTERM) and waits: the supervisor stops supervising first, then stops every service, so a restart
in progress never races `down`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
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

    def delay(self, consecutive: int) -> float:
        """Seconds to wait before restarting after the `consecutive`-th crash in a row (1-based)."""
        return float(min(self.cap, self.base * 2 ** max(0, consecutive - 1)))

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> RestartPolicy:
        """
        >>> RestartPolicy.from_environ({"COELHO_RESTART_BACKOFF": "0.5,8"}).cap
        8.0
        """
        env = os.environ if environ is None else environ
        raw = env.get("COELHO_RESTART_BACKOFF", "")
        if not raw:
            return cls()
        base, _, cap = raw.partition(",")
        return cls(base=float(base), cap=float(cap or cls.cap))


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
    """
    if not last:
        return "-"
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
        while not self.stopping.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 — the supervisor must outlive any one failure
                self.echo(f"supervisor: {type(exc).__name__}: {exc}")
            self.stopping.wait(self.policy.interval)

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
        quick = ran_for < self.policy.reset_after
        consecutive = self._consecutive.get(name, 0) + 1 if quick else 1
        self._consecutive[name] = consecutive
        delay = self.policy.delay(consecutive)
        crash_loop = consecutive >= self.policy.crash_loop_after
        last = {**describe_exit(code), "at": now, "ran_for": round(ran_for, 2)}
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
