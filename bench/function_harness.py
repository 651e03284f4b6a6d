"""What the function benchmarks share: a private platform (real Redis, free ports), function processes, load.

Not a benchmark itself; bench/learn.py, bench/predict.py and bench/freshness.py import it.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the packages, and tests.functions.streams (seeded events)


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


# A bench stopped by `kill` or `timeout` unwinds like Ctrl-C: its `finally` blocks stop the platform it started
# (whose services run in sessions of their own, so they would outlive it).
signal.signal(signal.SIGTERM, _exit_on_sigterm)


@contextmanager
def private_platform(services: list[str]) -> Iterator[Any]:
    """The real embedded services on free ports in a temporary data dir, stopped afterwards."""
    from coelho.runtime import Platform
    from coelho.settings import Settings

    with tempfile.TemporaryDirectory(prefix="coelho-bench-") as tmp:
        platform = Platform(Settings.load().with_free_ports(Path(tmp)), echo=lambda _line: None)
        try:
            platform.start(services, producers=False)
            yield platform
        finally:
            platform.stop()


def free_port() -> int:
    from coelho.settings import free_port as pick  # below the ephemeral range: no client socket takes it meanwhile

    return pick()


PIDS: dict[str, int] = {}  # URL -> PID of the function processes started here


def cpu_seconds(url: str) -> float:
    """CPU time (user + system) the function process behind `url` has used: load-independent cost figures."""
    import psutil

    proc = psutil.Process(PIDS[url])
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:  # gunicorn serves from a worker child
        times = p.cpu_times()
        total += times.user + times.system
    return total


@contextmanager
def function_process(
    settings: Any,
    name: str,
    server: str = "gunicorn",
    threads: int = 16,
    extra_env: dict[str, str] | None = None,
    tree: str | None = None,
) -> Iterator[str]:
    """`python -m functions.<name>` on a free port with COELHO_SERVER=server; yields its URL.

    tree: another checkout of the project to run the function from (e.g. a `git worktree` of an earlier commit),
    so a bench compares two versions of the code in one run, on the same machine state."""
    from coelho.services import python_service_env

    port = free_port()
    env = {
        **os.environ,
        **python_service_env(settings, name),
        "PORT": str(port),
        "COELHO_SERVER": server,
        "COELHO_THREADS": str(threads),
        "LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    log = open(settings.data_dir / f"bench-{name}-{port}.log", "wb")  # noqa: SIM115
    if tree:
        env["PYTHONPATH"] = tree
    proc = subprocess.Popen(
        [sys.executable, "-m", f"functions.{name}"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=tree,
    )
    url = f"http://127.0.0.1:{port}"
    PIDS[url] = proc.pid
    try:
        wait_ready(url, proc)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            if requests.get(url + "/health/readiness", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def ce_request(
    ce_type: str, data: Any, source: str = "/coelho/bench", ce_id: str | None = None, **ext: str
) -> tuple[dict[str, str], bytes]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": ce_id or str(uuid.uuid4()),
        "ce-source": source,
        "ce-type": ce_type,
        "content-type": "application/json",
        **{f"ce-{k}": v for k, v in ext.items()},
    }
    return headers, json.dumps(data).encode()


class Client:
    """A keep-alive HTTP/1.1 connection (http.client: the least client CPU per request in pure Python)."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def post(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        self.conn.request("POST", path, body=body, headers=headers)
        response = self.conn.getresponse()
        return response.status, response.read()


def load(
    url: str, requests_: list[tuple[dict[str, str], bytes]], concurrency: int, duration: float, path: str = "/"
) -> dict[str, Any]:
    """Closed-loop load: `concurrency` clients send requests back to back for `duration` s."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    stop = threading.Event()

    def worker(k: int) -> None:
        client = Client(url)
        i = k
        while not stop.is_set():
            headers, body = requests_[i % len(requests_)]
            i += concurrency
            t0 = time.perf_counter()
            status, _ = client.post(path, headers, body)
            latencies[k].append(time.perf_counter() - t0)
            if status >= 300:
                errors[k] += 1

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(duration)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    flat = sorted(x for lat in latencies for x in lat)
    return {
        "concurrency": concurrency,
        "requests": len(flat),
        "errors": sum(errors),
        "per_s": round(len(flat) / elapsed, 1),
        "p50_ms": round(percentile(flat, 50) * 1000, 2),
        "p99_ms": round(percentile(flat, 99) * 1000, 2),
        "mean_ms": round(statistics.fmean(flat) * 1000, 2) if flat else None,
    }


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def percentiles(values: list[float], digits: int = 1) -> dict[str, float | None]:
    """p50, p95, p99 and max of `values` (any order), rounded; None when there are none."""
    ordered = sorted(values)
    if not ordered:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    return {
        "p50": round(percentile(ordered, 50), digits),
        "p95": round(percentile(ordered, 95), digits),
        "p99": round(percentile(ordered, 99), digits),
        "max": round(ordered[-1], digits),
    }


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of one process from /proc/<pid>/stat (fields 14 and 15, in clock ticks); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces: split after its ")"
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def service_cpu(platform: Any) -> dict[str, float]:
    """CPU seconds used so far by each running service of `platform` (its whole process group: a Granian
    function's workers too), summed from /proc/<pid>/stat of each process."""
    out: dict[str, float] = {}
    for name in platform.entries():
        try:
            pids = [proc.pid for proc in platform.processes(name)]
        except Exception:  # gone meanwhile
            continue
        out[name] = sum(proc_cpu_seconds(pid) for pid in pids)
    return out


def cpu_per_event(before: dict[str, float], after: dict[str, float], events: int) -> dict[str, int]:
    """Microseconds of CPU per event, by service, over one phase (start-up excluded), plus the total."""
    rows = {name: (after.get(name, 0.0) - before.get(name, 0.0)) * 1e6 / max(events, 1) for name in after}
    rows["total"] = sum(rows.values())
    return {k: round(v) for k, v in sorted(rows.items(), key=lambda kv: -kv[1])}


def in_process_rate(domain_name: str, records: list[dict[str, Any]], model_name: str | None = None) -> float:
    """Events/s of River's test-then-train (`OnlineModel.learn_one`, the domain's metrics) in this process."""
    from eventing.domains import get_domain
    from functions.model_state.online_model import OnlineModel

    domain = get_domain(domain_name)
    state = OnlineModel.fresh(domain, model_name)
    clean = [domain.validate(r) for r in records]
    started = time.perf_counter()
    for i, record in enumerate(clean, start=1):
        state.learn_one(i, "record", record, 0)
    return len(clean) / (time.perf_counter() - started)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def log_positions(learn_url: str, domain_name: str) -> list[int]:
    """Each of learn-one's models of the domain: the last log entry it applied (its /metrics gauge)."""
    import urllib.request

    with urllib.request.urlopen(learn_url.rstrip("/") + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    prefix = f'coelho_model_log_position{{domain="{domain_name}",'
    return [int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines() if line.startswith(prefix)]


def wait_learned(learn_url: str, domain_name: str, target: int, timeout: float) -> float | None:
    """Wall time when every model of the domain in learn-one had applied log entry `target` (50 ms polls)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        positions = log_positions(learn_url, domain_name)
        if positions and min(positions) >= target:
            return time.time()
        time.sleep(0.05)
    return None


class LearnedClock(threading.Thread):
    """Samples learn-one's log position of a domain every `every_s` seconds: `learned_at(seq)` is the first wall
    time at which every model of the domain had applied entry `seq` (at most `every_s` late)."""

    def __init__(self, learn_url: str, domain_name: str, every_s: float = 0.02) -> None:
        super().__init__(name="learned-clock", daemon=True)
        self.learn_url, self.domain_name, self.every_s = learn_url, domain_name, every_s
        self.samples: list[tuple[float, int]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            positions = log_positions(self.learn_url, self.domain_name)
            if positions:
                self.samples.append((time.time(), min(positions)))
            self.stopping.wait(self.every_s)

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)

    def learned_at(self, seq: int) -> float | None:
        for when, position in self.samples:
            if position >= seq:
                return when
        return None

    def wait_for(self, seq: int, timeout: float) -> float | None:
        """Wait (on this clock's own samples) until entry `seq` was applied: its `learned_at`, None on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.samples and self.samples[-1][1] >= seq:
                return self.learned_at(seq)
            time.sleep(self.every_s)
        return None


TOPIC_PARTITIONS = 6  # partitions of a domain topic the benches create (the producers' default)


def produce_records(settings: Any, domain_name: str, events: list[Any], rate: float = 0.0) -> dict[str, float]:
    """Send with the producers' Kafka sink (paced at `rate` ev/s, 0 = flat out); returns send time by record id.

    A topic that does not exist yet is created with `TOPIC_PARTITIONS` partitions."""
    from eventing.domains import get_domain
    from producers.producer import KafkaSink

    domain = get_domain(domain_name)
    sink = KafkaSink(domain_name, settings.kafka_bootstrap, TOPIC_PARTITIONS)
    sent: dict[str, float] = {}
    started = time.perf_counter()
    try:
        for i, event in enumerate(events):
            if rate > 0:
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            sent[str(event.data[domain.id_field])] = time.time()
            sink.send(event)
        sink.flush(60)
    finally:
        sink.close()
    if sink.errors:
        raise RuntimeError(f"{domain_name}: {sink.errors} records not acknowledged by Kafka")
    return sent
