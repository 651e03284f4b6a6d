"""Every fault scenario under a steady load, on a private platform: a table and a JSON object (last line).

The platform (free ports, temporary data directory) runs under the supervisor (coelho/supervisor.py) as `coelho up`
would, with a short backoff: every function (learn, predict, checkpoint, lake, sql, chat), the router and the three
producers. Per scenario, tests/faults/harness.py posts tfd records to the Broker at `--rate` events/s, injects the
fault at a random instant, keeps the load on, then accounts for every acknowledged event: learned exactly once,
learned twice, dead-lettered (with the reason), lost; the time from the fault until an event sent after it is learned
(or until the faulted service is healthy again, if later); and whether learn-one's model snapshot equals a fresh
in-process replay of the log it learned.

A kill -9 or restart scenario hits its service `--repeat` times (default 3) during one load, each time at a random
instant once the supervisor has brought it back, so a run stays one load per service however many repeats. The
load is tfd records: killing the eta or ecci producer, sql or chat must leave it untouched while the supervisor
restarts them; killing the lake is also checked in the lake (each acknowledged record in the tfd table once).
`redis-lost-writes` makes Redis restart without its last second of writes (SIGSTOP, the append-only file cut back
to its size a second earlier, SIGKILL): what was acknowledged in that second is gone from the log (`lost`, the known
limit of `appendfsync everysec`) and the models must still equal a replay of what the log holds. `hung-learn` stops
learn-one (SIGSTOP, alive but silent) and leaves it so: the supervisor's liveness check must kill and restart it
(default limit, 30 s). The JSON also says which services the liveness check killed (`unresponsive_kills`): only the
hung one should be there. As root, Redis' directory and the whole data directory are tmpfs mounts that the full-disk
scenarios fill.

    .venv/bin/python bench/faults.py [--rate 20] [--only kill-learn,duplicates] [--repeat 3]
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

FUNCTIONS = ["learn", "predict", "checkpoint", "lake", "sql", "chat"]
PRODUCERS = ["producer_tfd", "producer_eta", "producer_ecci"]
SERVICES = ["router", *FUNCTIONS, *PRODUCERS]
KILLED = [*FUNCTIONS, "router", *PRODUCERS]
RESTARTED = ["redis", "kafka", "s3", "mlflow"]
LOST_WINDOW_S = 1.0  # what appendfsync everysec may lose in a crash: about the last second of writes
DATA_TMPFS = "2g"  # the data directory's tmpfs (S3, the broker's log, MLflow, logs, run state) for full-disk-data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="records/s of the load")
    parser.add_argument("--only", default="", help="comma-separated scenario names (default: all)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="kill -9 and restart scenarios: how many times the service is hit, at random instants, in its one load",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the platform's data directory and logs (path printed; the data directory is then not a tmpfs)",
    )
    parser.add_argument(
        "--no-full-disk",
        action="store_true",
        help="skip the full-disk scenarios (they mount tmpfs on Redis' directory and the data directory: root)",
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
        full_disk = not args.no_full_disk
        args.full_disk_data = full_disk and not args.keep and _mount_tmpfs(Path(tmp), DATA_TMPFS)
        if args.full_disk_data:
            scope.callback(_umount, Path(tmp))
        plat = Platform(Settings.load().with_free_ports(Path(tmp)), echo=lambda _line: None)
        sup = Supervisor(plat, RestartPolicy(base=0.5, cap=4.0, interval=0.1))
        redis_dir = plat.settings.data_dir / "redis"
        args.full_disk = full_disk and _mount_tmpfs(redis_dir, "64m")
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
                _umount(redis_dir)
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
    repeat = max(1, args.repeat)
    for name in KILLED:
        scenarios.append((f"kill-{name}", Repeated(plat, name, signal.SIGKILL, repeat), name))
    for name in RESTARTED:
        scenarios.append((f"restart-{name}", Repeated(plat, name, signal.SIGTERM, repeat), name))
    scenarios.append(("redis-lost-writes", RedisLostWrites(plat), "redis"))
    scenarios.append(("hung-learn", _hang(plat, "learn"), "learn"))
    scenarios += [
        ("duplicates", _duplicates, None),
        ("reordered", _reordered, None),
        ("slow-subscriber", _slow(plat), None),
        ("poison", _poison, None),
    ]
    if args.full_disk:
        scenarios.append(("full-disk-redis", _full_disk(plat.settings.data_dir / "redis"), None))
    if args.full_disk_data:
        scenarios.append(("full-disk-data", _full_disk(plat.settings.data_dir), None))
    results = []
    for name, fault, service in scenarios:
        if only and name not in only:
            continue
        restarts_before = plat.entries().get(service, {}).get("restarts", 0) if service else 0
        result = harness.run_scenario(plat, name, fault, rate=args.rate, after=8.0, settle=120.0, check_model=True)
        if isinstance(fault, Repeated | RedisLostWrites) and service is not None:
            injected = fault.injected if isinstance(fault, Repeated) else 1
            healthy_again = _wait_recovered(plat, service, restarts_before + injected)
            recoveries = (fault.recoveries if isinstance(fault, Repeated) else []) + (
                [healthy_again] if healthy_again is not None else []
            )
            result.faults, result.recover_each_s = injected, recoveries
            if recoveries:
                result.recover_s = max(result.recover_s or 0.0, *recoveries)
            if isinstance(fault, Repeated) and fault.gave_up:
                result.note = fault.gave_up
        elif service is not None:
            healthy_again = _wait_recovered(plat, service, restarts_before + 1)
            if healthy_again is not None:
                result.recover_s = max(result.recover_s or 0.0, healthy_again)
        if isinstance(fault, RedisLostWrites):
            result.note = fault.note(plat)
        if name == "kill-lake":
            lake = _lake_accounting(plat, result.acknowledged_ids)
            result.note = (result.note + "; " if result.note else "") + lake
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


class Repeated:
    """Hit a service with `sig` `times` times during one load: the first at a random instant within a second, each
    next one once the supervisor has it healthy again, after a random 0.5-3 s. A service not back within
    `patience` s ends the repeats (said in the note): the run stays bounded."""

    def __init__(self, plat: Any, name: str, sig: int, times: int, patience: float = 120.0) -> None:
        self.plat, self.name, self.sig, self.times, self.patience = plat, name, sig, times, patience
        self.injected = 0
        self.recoveries: list[float] = []
        self.gave_up = ""

    def __call__(self, load: Any) -> None:
        time.sleep(random.random())
        restarts = 0
        for i in range(self.times):
            if i:
                back = _wait_recovered(self.plat, self.name, restarts + 1, self.patience)
                if back is None:
                    self.gave_up = f"{self.name} not healthy {self.patience:.0f} s after hit {i}: no more hits"
                    return
                self.recoveries.append(back)
                time.sleep(random.uniform(0.5, 3.0))
            restarts = int(self.plat.entries().get(self.name, {}).get("restarts", 0))
            self.plat.kill(self.name, self.sig)
            self.injected += 1


class RedisLostWrites:
    """Redis restarts without its last `window` s of writes, as after a machine crash with appendfsync everysec: the
    append-only file's size is noted, `window` s later Redis is stopped (SIGSTOP: it writes nothing more), the file
    is cut back to that size and Redis is killed (SIGKILL); the supervisor starts it again from the shorter file.
    Every write of that window is gone: log entries, their sequence numbers and chain, the dedup keys, snapshots."""

    def __init__(self, plat: Any, window: float = LOST_WINDOW_S) -> None:
        self.plat, self.window = plat, window
        self.dropped: dict[str, int] = {}
        self.dropped_load = 0  # of the tfd entries dropped, the load's (the rest: the producer_tfd service's)
        self.dropped_bytes = 0
        self.skipped = ""

    def __call__(self, load: Any) -> None:
        aof = self.plat.settings.data_dir / "redis" / "coelho.aof"
        before, heads = aof.stat(), self._heads()
        time.sleep(self.window)
        after = self._heads()
        in_window = self._records_after(heads["tfd"])
        procs = self.plat.processes("redis")
        for p in procs:
            p.suspend()
        now = aof.stat()
        if now.st_ino != before.st_ino:  # rewritten meanwhile (BGREWRITEAOF): the old size means nothing
            self.skipped = "the append-only file was rewritten in the window: not cut"
        else:
            os.truncate(aof, before.st_size)
            self.dropped_bytes = now.st_size - before.st_size
            self.dropped = {d: after[d] - heads[d] for d in heads}
            self.dropped_load = sum(1 for i in in_window if i.startswith(f"{load.tag}-"))
        self.plat.kill("redis", signal.SIGKILL)

    def _records_after(self, seq: int) -> list[str]:
        """The transaction ids of the tfd records in the log after `seq` (what the cut is about to drop)."""
        import redis

        client: Any = redis.Redis.from_url(self.plat.settings.redis_url, socket_timeout=5)
        try:
            entries = client.xrange("coelho:tfd:log", min=f"{seq + 1}-0")
        finally:
            client.close()
        return [
            str(json.loads(fields[b"d"]).get("transaction_id"))
            for _id, fields in entries
            if fields.get(b"k") == b"record"
        ]

    def _heads(self) -> dict[str, int]:
        import redis

        from eventing.domains import DOMAINS

        client: Any = redis.Redis.from_url(self.plat.settings.redis_url, socket_timeout=5)
        try:
            return {d: int(client.get(f"coelho:{d}:seq") or 0) for d in DOMAINS}
        finally:
            client.close()

    def note(self, plat: Any) -> str:
        if self.skipped:
            return self.skipped
        dropped = ", ".join(f"{d} {n}" for d, n in self.dropped.items())
        lost = "; ".join(
            f"{svc}: {text}" for svc in ("learn", "predict", "checkpoint") if (text := _log_lost(plat, svc))
        )
        return (
            f"{self.window:.0f} s of writes cut ({self.dropped_bytes} bytes of AOF; log entries dropped: {dropped}, "
            f"{self.dropped_load} of the tfd ones the load's)"
            + (f"; coelho_model_log_lost_total {lost}" if lost else "; coelho_model_log_lost_total: none")
        )


def _log_lost(plat: Any, service: str) -> str:
    """The service's coelho_model_log_lost_total samples that are not 0, as `domain outcome=n`."""
    import requests

    svc = plat.by_name[service]
    try:
        text = requests.get(f"http://{plat.settings.host}:{plat.settings.ports[svc.port]}/metrics", timeout=10).text
    except requests.RequestException:
        return "metrics unreachable"
    out = []
    for line in text.splitlines():
        if line.startswith("coelho_model_log_lost_total{"):
            labels, _, value = line.rpartition(" ")
            if float(value) > 0:
                fields = dict(kv.split("=", 1) for kv in labels[labels.index("{") + 1 : -1].split(","))
                out.append(f"{fields['domain'].strip(chr(34))} {fields['outcome'].strip(chr(34))}={float(value):.0f}")
    return ", ".join(out)


def _lake_accounting(plat: Any, ids: list[str], wait: float = 120.0) -> str:
    """How often each acknowledged record is in the lake's tfd table (waits up to `wait` s for the batches)."""
    from collections import Counter

    from deltalake import DeltaTable

    from functions.lake.rows import lake_table
    from functions.lake.service import uri_of
    from functions.lake.tables import storage_options

    env = plat.settings.function_env()
    table = lake_table("tfd", "record")
    uri, options = uri_of(table, env), storage_options(env)
    wanted, counts = set(ids), Counter[str]()
    deadline = time.monotonic() + wait
    while True:
        with contextlib.suppress(Exception):  # the table may not exist yet, S3 may be slow
            column = DeltaTable(uri, storage_options=options).to_pyarrow_dataset().to_table(columns=[table.id_column])
            counts = Counter(i for i in column.column(0).to_pylist() if i in wanted)
        if wanted <= set(counts) or time.monotonic() > deadline:
            break
        time.sleep(2)
    twice = sum(1 for n in counts.values() if n > 1)
    return f"lake: {len(counts) - twice} once, {twice} twice, {len(wanted - set(counts))} missing"


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


def _wait_recovered(plat: Any, name: str, restarts: int, timeout: float = 240.0) -> float | None:
    """The supervisor's figure for the restart: seconds from the exit until healthy again, once the service has
    been restarted `restarts` times in all and is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = plat.entries().get(name, {})
        if entry.get("restarts", 0) >= restarts and entry.get("phase") == "running":
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


def _mount_tmpfs(path: Path, size: str) -> bool:
    """A tmpfs of `size` at `path`, so its disk can be filled safely (root only; False otherwise)."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], check=False)  # still busy: detach it now, freed when unused


def _full_disk(path: Path) -> Callable[[Any], object]:
    """Fill the file system at `path` until ENOSPC, keep it full 8 s, then free it. Redis' directory: the AOF cannot
    be written; the data directory: S3 (so the broker's log), MLflow, every log file and the run state cannot."""

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
