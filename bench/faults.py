"""Every fault scenario under a steady load, on a private platform: a table and a JSON object (last line).

The platform (free ports, temporary data directory) runs under the supervisor (coelho/supervisor.py) as `coelho up`
would, with a short backoff. Per scenario, tests/faults/harness.py posts tfd records to the Broker at `--rate`
events/s, injects the fault at a random instant, keeps the load on, then accounts for every acknowledged event:
learned exactly once, learned twice, dead-lettered (with the reason), lost; the time from the fault until an event
sent after it is learned (or until the faulted service is healthy again, if later); and whether learn-one's model
snapshot equals a fresh in-process replay of the log it learned. `hung-learn` stops learn-one (SIGSTOP, alive but
silent) and leaves it so: the supervisor's liveness check must kill and restart it (default limit, 30 s). The JSON
also says which services the liveness check killed (`unresponsive_kills`): only the hung one should be there.

    .venv/bin/python bench/faults.py [--rate 20] [--only kill-learn,duplicates] [--repeat 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from function_harness import load_average

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVICES = ["router", "learn", "predict", "checkpoint", "producer_tfd"]
KILLED = ["learn", "predict", "checkpoint", "router", "producer_tfd"]
RESTARTED = ["redis", "kafka", "s3", "mlflow"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="records/s of the load")
    parser.add_argument("--only", default="", help="comma-separated scenario names (default: all)")
    parser.add_argument("--repeat", type=int, default=1, help="kill -9 and restart scenarios: how many times each")
    parser.add_argument(
        "--keep", action="store_true", help="keep the platform's data directory and logs (path printed)"
    )
    parser.add_argument(
        "--no-full-disk", action="store_true", help="skip the full-disk scenario (it mounts a 64 MB tmpfs: root)"
    )
    args = parser.parse_args()

    from coelho.runtime import Platform
    from coelho.settings import Settings
    from coelho.supervisor import RestartPolicy, Supervisor
    from tests.faults import harness

    os.environ.setdefault("COELHO_PRODUCER_RATE", "2")
    with contextlib.ExitStack() as scope:
        if args.keep:
            tmp = tempfile.mkdtemp(prefix="coelho-faults-")
            print(f"data directory and logs kept in {tmp}", flush=True)
        else:
            tmp = scope.enter_context(tempfile.TemporaryDirectory(prefix="coelho-faults-"))
        plat = Platform(Settings.load().with_free_ports(Path(tmp)), echo=lambda _line: None)
        sup = Supervisor(plat, RestartPolicy(base=0.5, cap=4.0, interval=0.1))
        redis_dir = plat.settings.data_dir / "redis"
        args.full_disk = not args.no_full_disk and _mount_tmpfs(redis_dir)
        t0 = time.monotonic()
        try:
            plat.start(SERVICES)
            started_in = time.monotonic() - t0
            sup.start_thread()
            try:
                results = run_all(plat, harness, args)
            finally:
                sup.stop()
                plat.stop()
        finally:
            if args.full_disk:
                subprocess.run(["umount", str(redis_dir)], check=False)
    print_table(results)
    print(
        json.dumps(
            {
                "bench": "faults",
                "rate": args.rate,
                "platform_start_s": round(started_in, 1),
                "load_average": load_average(),
                "unresponsive_after_s": sup.policy.unresponsive_after,
                "unresponsive_kills": sup.unresponsive_kills,
                "scenarios": [r.to_json() for r in results],
            }
        )
    )


def run_all(plat: Any, harness: Any, args: Any) -> list[Any]:
    only = {s for s in args.only.split(",") if s}
    scenarios: list[tuple[str, Callable[[Any], object], str | None]] = []
    for name in KILLED:
        for i in range(args.repeat):
            scenarios.append((f"kill-{name}" + (f"#{i + 1}" if args.repeat > 1 else ""), _kill(plat, name), name))
    for name in RESTARTED:
        for i in range(args.repeat):
            scenarios.append(
                (f"restart-{name}" + (f"#{i + 1}" if args.repeat > 1 else ""), _kill(plat, name, signal.SIGTERM), name)
            )
    scenarios.append(("hung-learn", _hang(plat, "learn"), "learn"))
    scenarios += [
        ("duplicates", _duplicates, None),
        ("reordered", _reordered, None),
        ("slow-subscriber", _slow(plat), None),
        ("poison", _poison, None),
    ]
    if args.full_disk:
        scenarios.append(("full-disk-redis", _full_disk(plat.settings.data_dir / "redis"), None))
    results = []
    for name, fault, service in scenarios:
        if only and name.split("#")[0] not in only:
            continue
        restarts_before = plat.entries().get(service, {}).get("restarts", 0) if service else 0
        result = harness.run_scenario(plat, name, fault, rate=args.rate, after=8.0, settle=120.0, check_model=True)
        if service is not None:
            healthy_again = _wait_recovered(plat, service, restarts_before)
            if healthy_again is not None:
                result.recover_s = max(result.recover_s or 0.0, healthy_again)
        if name == "poison":
            result.note = POISON_NOTE.get("note", "")
        if name.startswith("hung-") and service is not None:
            result.note = _hung_note(plat, service)
            hung_for = _hung_recovery(plat, service)
            if hung_for is not None:
                result.recover_s = max(result.recover_s or 0.0, hung_for)
        stuck = _unstick_ingress(plat)
        if stuck:
            result.note = (result.note + "; " if result.note else "") + stuck
        print(name, json.dumps(result.to_json()), flush=True)
        results.append(result)
    harness.recount(plat, results)
    return results


def _kill(plat: Any, name: str, sig: int = signal.SIGKILL) -> Callable[[Any], object]:
    def fault(load: Any) -> None:
        time.sleep(random.random())
        plat.kill(name, sig)

    return fault


def _hang(plat: Any, name: str) -> Callable[[Any], object]:
    """The service's processes stop (SIGSTOP) and stay stopped: alive, holding their ports, answering nothing."""

    def fault(load: Any) -> None:
        HUNG_AT[name] = time.time()
        for p in plat.processes(name):
            p.suspend()

    return fault


HUNG_AT: dict[str, float] = {}


def _hung_recovery(plat: Any, name: str) -> float | None:
    """Seconds from the hang until the service was healthy again (the liveness limit + the restart)."""
    entry = plat.entries().get(name, {})
    last, recovered = entry.get("last_exit") or {}, entry.get("recovered_in")
    if name not in HUNG_AT or "at" not in last or recovered is None:
        return None
    return round(float(last["at"]) + float(recovered) - HUNG_AT[name], 2)


def _hung_note(plat: Any, name: str) -> str:
    """How the supervisor ended the hang (its last exit of the service); a process still stopped is resumed."""
    from coelho.supervisor import exit_text

    stopped = [p for p in plat.processes(name) if p.status() == "stopped"]
    for p in stopped:
        p.resume()
    last = plat.entries().get(name, {}).get("last_exit")
    note = f"supervisor: {exit_text(last).split(' at ')[0]}" if last else "supervisor: no restart"
    return note + (f"; {len(stopped)} processes were still stopped (resumed)" if stopped else "")


def _wait_recovered(plat: Any, name: str, restarts_before: int, timeout: float = 240.0) -> float | None:
    """The supervisor's figure for the restart: seconds from the exit until healthy again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = plat.entries().get(name, {})
        if entry.get("restarts", 0) > restarts_before and entry.get("phase") == "running":
            return float(entry.get("recovered_in") or 0.0)
        time.sleep(0.5)
    return None


def _ingress_answers(plat: Any) -> int:
    import requests

    s = plat.settings
    headers = {
        "ce-id": f"probe-{time.time_ns()}",
        "ce-specversion": "1.0",
        "ce-source": "/bench/faults",
        "ce-type": "com.coelho.faults.probe",  # no Trigger takes it
        "content-type": "application/json",
    }
    try:
        return requests.post(
            f"{s.broker_url}/{s.namespace}/default", data=b"{}", headers=headers, timeout=10
        ).status_code
    except requests.RequestException:
        return 0


def _unstick_ingress(plat: Any, patience: float = 30.0) -> str:
    """After a scenario the Broker ingress must take events again within `patience` s; if it still refuses (the
    router alive but unable to write to Kafka), restart the router so the next scenario starts clean, and say so."""
    from coelho.supervisor import request_restart

    deadline = time.monotonic() + patience
    code = 0
    while time.monotonic() < deadline:
        code = _ingress_answers(plat)
        if code == 202:
            return ""
        time.sleep(1)
    before = plat.pid("router")
    request_restart(plat, "router")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (plat.pid("router") != before and _ingress_answers(plat) == 202):
        time.sleep(1)
    return f"ingress answered {code} for {patience:.0f} s after the fault: router restarted"


def _duplicates(load: Any) -> None:
    import requests

    session = requests.Session()
    for ident in list(load.acknowledged):
        offset = int(ident.rsplit("-", 1)[1])
        load.post_until_taken(load.events(offset + 1)[offset], session)


def _reordered(load: Any) -> None:
    """A burst of 50 new events sent newest first (ids the load will not use)."""
    import requests

    session = requests.Session()
    burst = load.events(100_050)[100_000:]
    for event in reversed(burst):
        if load.post_until_taken(event, session):
            load.acknowledged.append(str(event.get("id")))


def _slow(plat: Any) -> Callable[[Any], object]:
    """learn-one stops answering for 8 s (SIGSTOP, then SIGCONT): a subscriber slower than the delivery timeout."""

    def fault(load: Any) -> None:
        for p in plat.processes("learn"):
            p.suspend()
        time.sleep(8)
        for p in plat.processes("learn"):
            p.resume()

    return fault


def _mount_tmpfs(path: Path) -> bool:
    """A 64 MB tmpfs as Redis' directory, so the disk can be filled safely (root only; False otherwise)."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def _full_disk(path: Path) -> Callable[[Any], object]:
    """Fill Redis' file system until ENOSPC, keep it full 8 s (the AOF cannot be written), then free it."""

    def fault(load: Any) -> None:
        filler = path / "filler"
        with filler.open("wb", buffering=0) as fh:
            chunk = b"\0" * (1 << 20)
            try:
                while True:
                    fh.write(chunk)
            except OSError:
                pass
        time.sleep(8)
        filler.unlink()

    return fault


POISON_NOTE: dict[str, str] = {}


def _poison(load: Any) -> None:
    import requests

    from tests.faults.harness import record_event

    invalid = record_event(f"{load.tag}-poison-invalid", {"amount": "not a number"})
    undecodable = record_event(f"{load.tag}-poison-undecodable", {})
    undecodable = type(undecodable)(undecodable.attributes, b"\xff\xfe not json")
    oversized = record_event(f"{load.tag}-poison-oversized", {"blob": "x" * (12 * 1024 * 1024)})
    codes = {}
    for kind, event in (("invalid", invalid), ("undecodable", undecodable), ("oversized", oversized)):
        r = requests.post(load.ingress, data=event.data, headers=event.http_headers(), timeout=30)
        codes[kind] = r.status_code
        if r.status_code == 202:
            load.acknowledged.append(str(event.get("id")))  # taken: must end learned or dead-lettered
    POISON_NOTE["note"] = "ingress: " + ", ".join(f"{k} {v}" for k, v in codes.items())


def print_table(results: list[Any]) -> None:
    head = (
        "scenario",
        "produced",
        "once",
        "twice",
        "dead-lettered",
        "lost",
        "late",
        "recover s",
        "model=replay",
        "notes",
    )
    rows = [head]
    for r in results:
        reasons = "; ".join(f"{n}x {why}" for why, n in r.reasons.items())
        rows.append(
            (
                r.scenario,
                str(r.produced),
                str(r.learned_once),
                str(r.learned_twice),
                str(r.dead_lettered),
                str(r.lost),
                str(r.late),
                "-" if r.recover_s is None else f"{r.recover_s:.1f}",
                {True: "yes", False: "NO", None: "n/a"}[r.model_equals_replay],
                "; ".join(
                    x for x in (reasons, r.note, f"{r.duplicates_sent} resends" if r.duplicates_sent else "") if x
                ),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
