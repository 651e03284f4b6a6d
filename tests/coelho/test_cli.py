"""`coelho up --detach`, `status --json`, `down` and data durability, through the real command line.

One platform instance of its own (own free ports, own data dir): the CLI must find it through the same
environment variables a user would set.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from coelho.engines import BinaryMissing
from coelho.processes import port_in_use
from coelho.services import BY_NAME, DOMAINS, SERVICES, Service, s3_client
from coelho.settings import Settings

pytestmark = pytest.mark.stack

COELHO = [str(Path(sys.executable).parent / "coelho")]
if not Path(COELHO[0]).exists():
    COELHO = [sys.executable, "-m", "coelho.cli"]


@dataclass
class Instance:
    settings: Settings
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*COELHO, *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def status(self) -> tuple[int, dict[str, Any]]:
        proc = self.run("status", "--json", timeout=60)
        return proc.returncode, json.loads(proc.stdout)


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    s = Settings.load().with_free_ports(tmp_path_factory.mktemp("cli-data"))
    env = {**os.environ, **s.to_environ()}
    inst = Instance(s, env)
    try:
        yield inst
    finally:
        inst.run("down", timeout=120)


def _all_ports(s: Settings, names: list[str]) -> list[int]:
    return [p for n in names if n in BY_NAME for p in BY_NAME[n].ports(s)]


PRODUCERS = {f"producer_{d}" for d in DOMAINS}


def _installed(svc: Service, s: Settings) -> bool:
    """An optional row (Prometheus) runs only when its binary is installed."""
    if not svc.optional:
        return True
    try:
        svc.argv(s)
    except BinaryMissing:
        return False
    return True


def _expected_rows(s: Settings, producers: bool = True) -> set[str]:
    """Every row of the services table `up` must run (a missing module fails `up`, it never drops a row)."""
    return {svc.name for svc in SERVICES if _installed(svc, s) and (producers or svc.kind != "producer")}


def test_up_detach_then_everything_healthy(instance: Instance) -> None:
    proc = instance.run("up", "--detach")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ready in" in proc.stdout
    rc, st = instance.status()
    assert rc == 0 and st["healthy"], st
    services = st["services"]
    assert {"s3", "kafka", "redis", "mlflow"} <= set(services)
    missing = _expected_rows(instance.settings) - set(services)
    assert not missing, f"rows of the services table not running after `up`: {sorted(missing)}"
    assert set(services) >= PRODUCERS  # `up` streams data: the three producers run
    for name, info in services.items():
        assert info["healthy"] and info["running"], (name, info)
        host, port = info["address"].rsplit(":", 1)
        assert host == "127.0.0.1"
        assert psutil.pid_exists(info["pid"])
    # the table form names every service
    table = instance.run("status").stdout
    for name in services:
        assert name in table
    # up again is harmless (idempotent)
    again = instance.run("up", "--detach")
    assert again.returncode == 0, again.stderr
    assert instance.status()[1]["services"]["redis"]["pid"] == services["redis"]["pid"]


def test_buckets_exist_on_the_s3_server(instance: Instance) -> None:
    """Through the plain S3 API (boto3, not the runtime's own client) with the platform's endpoint and keys."""
    import boto3
    from botocore.exceptions import ClientError

    s = instance.settings

    def client(secret: str):  # type: ignore[no-untyped-def]
        return boto3.client(
            "s3",
            endpoint_url=s.s3_endpoint,
            aws_access_key_id=s.s3_access_key,
            aws_secret_access_key=secret,
            region_name="us-east-1",
        )

    names = {b["Name"] for b in client(s.s3_secret_key).list_buckets()["Buckets"]}
    assert {"mlflow-artifacts", "delta-lake", "raw-data"} <= names, names
    with pytest.raises(ClientError):  # the S3 API wants the access keys
        client(s.s3_secret_key + "-wrong").list_buckets()


def test_logs_prints_a_service_log(instance: Instance) -> None:
    proc = instance.run("logs", "redis", "--lines", "0", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "start: " in proc.stdout and "redis-server" in proc.stdout  # the runtime's start line
    assert "Ready to accept connections" in proc.stdout  # ... and what Redis itself wrote
    log = instance.settings.log_dir / "redis.log"
    assert log.read_text(errors="replace").startswith(proc.stdout)  # the whole file (Redis may add lines)
    last = instance.run("logs", "redis", "-n", "2", timeout=60)
    assert last.returncode == 0 and len(last.stdout.splitlines()) == 2, last.stdout
    assert last.stdout in log.read_text(errors="replace")
    assert last.stdout.splitlines()[0] != proc.stdout.splitlines()[0]  # the last lines, not the first
    unknown = instance.run("logs", "no-such-service", timeout=60)
    assert unknown.returncode != 0 and "no log for 'no-such-service'" in unknown.stderr
    assert "redis" in unknown.stderr  # names the logs that exist


def test_logs_follow_shows_new_lines_until_stopped(instance: Instance) -> None:
    import redis

    proc = subprocess.Popen(
        [*COELHO, "logs", "redis", "-f", "-n", "1"], env=instance.env, stdout=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        lines.get(timeout=60)  # the last line already in the log: from here on, only new lines
        r = redis.Redis.from_url(instance.settings.redis_url)
        r.bgsave()  # Redis logs "Background saving started by pid ..."
        r.close()
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while not any("Background saving started" in line for line in seen):
            assert time.monotonic() < deadline, f"`coelho logs -f` did not show Redis's new line; got {seen}"
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
        assert proc.poll() is None  # still following
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise
    assert code == 0  # Ctrl-C ends it quietly
    reader.join(10)


def test_produce_for_a_duration(instance: Instance) -> None:
    """`coelho produce DOMAIN --duration S` stops by itself and its records are on the platform's broker."""
    from kafka import KafkaConsumer

    import producers
    from eventing.domains import DOMAINS as DOMAIN_DECLS

    d = DOMAIN_DECLS["eta"]
    seed = 424242
    proc = instance.run("produce", "eta", "--duration", "1", "--rate", "20", "--seed", str(seed), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["domain"] == "eta" and summary["errors"] == 0, summary
    assert summary["sent"] == summary["acknowledged"] > 0, summary
    assert summary["seconds"] >= 0.9, summary  # it ran for the duration ...
    assert summary["sent"] <= 20 * summary["seconds"] + 5, summary  # ... at the rate asked
    ids = {r[d.id_field] for r in producers.records("eta", summary["sent"], seed=seed)}  # same seed, same stream
    consumer = KafkaConsumer(
        d.topic,
        bootstrap_servers=instance.settings.kafka_bootstrap,
        group_id=f"cli-produce-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    found: set[str] = set()
    deadline = time.monotonic() + 60
    try:
        while found != ids and time.monotonic() < deadline:
            for messages in consumer.poll(timeout_ms=1000).values():
                for m in messages:
                    record_id = json.loads(m.value).get(d.id_field)
                    if record_id in ids:
                        found.add(record_id)
    finally:
        consumer.close()
    assert found == ids, f"{len(ids - found)} of {len(ids)} produced records not read back"


def test_killed_service_is_restarted_by_the_supervisor(instance: Instance) -> None:
    _, before = instance.status()
    assert before["supervisor"] and psutil.pid_exists(before["supervisor"]["pid"])
    pid = before["services"]["redis"]["pid"]
    psutil.Process(pid).kill()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rc, st = instance.status()
        if rc == 0 and st["services"]["redis"]["pid"] != pid:
            break
        time.sleep(0.5)
    assert rc == 0 and st["services"]["redis"]["pid"] != pid, st
    redis = st["services"]["redis"]
    assert redis["restarts"] == 1 and redis["last_exit"]["signal"] == "SIGKILL", redis
    assert st["services"]["kafka"]["pid"] == before["services"]["kafka"]["pid"]  # the others untouched
    table = instance.run("status").stdout
    assert "RESTARTS" in table and "killed by SIGKILL" in table, table
    # `coelho restart` goes through the supervisor: a new process, healthy, the others untouched
    again = instance.run("restart", "redis", timeout=120)
    assert again.returncode == 0 and "restarted" in again.stdout, again.stdout + again.stderr
    _, st = instance.status()
    assert st["services"]["redis"]["pid"] not in (pid, redis["pid"]) and st["services"]["redis"]["healthy"]
    assert st["services"]["kafka"]["pid"] == before["services"]["kafka"]["pid"]
    # `up` on a supervised platform starts nothing and says who supervises it
    proc = instance.run("up", "--detach")
    assert proc.returncode == 0 and "supervised by pid" in proc.stdout, proc.stdout + proc.stderr


def _kafka_write(bootstrap: str, topic: str, group: str) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(3):
        producer.send(topic, key=b"k", value=f"record-{i}".encode()).get(timeout=20)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        consumer_timeout_ms=15000,
    )
    seen = []
    for msg in consumer:
        seen.append(msg.value)
        if len(seen) == 2:
            break
    consumer.commit()  # committed offset 2: the third record is still to read
    consumer.close()
    assert seen == [b"record-0", b"record-1"]


def _kafka_read(bootstrap: str, topic: str, group: str) -> tuple[list[bytes], list[bytes]]:
    from kafka import KafkaConsumer

    everything = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=8000
    )
    all_values = [m.value for m in everything]
    everything.close()
    resumed = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        consumer_timeout_ms=15000,
    )
    rest = [m.value for m in resumed]
    resumed.close()
    return all_values, rest


def _mlflow_log_artifact(uri: str, experiment: str, text: str) -> str:
    """A run with one artifact, through the tracking server (which proxies artifacts to S3); returns the run id."""
    exp = requests.post(f"{uri}/api/2.0/mlflow/experiments/create", json={"name": experiment}, timeout=30)
    assert exp.status_code == 200, exp.text
    run = requests.post(
        f"{uri}/api/2.0/mlflow/runs/create", json={"experiment_id": exp.json()["experiment_id"]}, timeout=30
    )
    assert run.status_code == 200, run.text
    info = run.json()["run"]["info"]
    assert info["artifact_uri"].startswith("mlflow-artifacts:"), info
    artifact_path = info["artifact_uri"].split("mlflow-artifacts:", 1)[1].lstrip("/")
    put = requests.put(f"{uri}/api/2.0/mlflow-artifacts/artifacts/{artifact_path}/note.txt", data=text, timeout=30)
    assert put.status_code == 200, put.text
    return str(info["run_id"])


def test_data_survives_down_and_up(instance: Instance) -> None:
    s = instance.settings
    import redis

    token = uuid.uuid4().hex
    topic, group = f"runtime-test-{token[:8]}", f"runtime-test-group-{token[:8]}"
    _kafka_write(s.kafka_bootstrap, topic, group)
    r = redis.Redis.from_url(s.redis_url)
    r.set("coelho:test:durable", token)
    r.close()
    import io

    s3_client(s).put_object("raw-data", f"runtime-test/{token}.txt", io.BytesIO(token.encode()), len(token))
    run_id = _mlflow_log_artifact(s.mlflow_uri, f"exp-{token}", token)

    _, st = instance.status()
    pids = [info["pid"] for info in st["services"].values()]
    ports = _all_ports(s, list(st["services"]))
    down = instance.run("down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
    busy = [p for p in ports if port_in_use("127.0.0.1", p)]
    assert not busy, f"ports still listening after down: {busy}"
    assert instance.status()[0] == 1  # nothing running

    up = instance.run("up", "--detach", "--no-producers")  # (fewer processes: a faster test)
    assert up.returncode == 0, up.stdout + up.stderr
    rc, st = instance.status()
    assert rc == 0, st
    assert set(st["services"]) == _expected_rows(s, producers=False)  # everything else, and no producer
    r = redis.Redis.from_url(s.redis_url)
    assert r.get("coelho:test:durable") == token.encode()
    r.close()
    obj = s3_client(s).get_object("raw-data", f"runtime-test/{token}.txt")
    assert obj.read() == token.encode()
    obj.close()
    got = requests.get(
        f"{s.mlflow_uri}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": f"exp-{token}"}, timeout=30
    )
    assert got.status_code == 200, got.text
    # the artifact went through MLflow's proxy to S3 and is still there
    art = requests.get(f"{s.mlflow_uri}/get-artifact", params={"path": "note.txt", "run_uuid": run_id}, timeout=30)
    assert art.status_code == 200 and art.text == token, art.text
    stored = [o.object_name for o in s3_client(s).list_objects("mlflow-artifacts", prefix="artifacts/", recursive=True)]
    assert any(name.endswith(f"{run_id}/artifacts/note.txt") for name in stored), stored
    all_values, rest = _kafka_read(s.kafka_bootstrap, topic, group)
    assert all_values == [b"record-0", b"record-1", b"record-2"]
    assert rest == [b"record-2"]  # the committed offset survived too


def test_foreground_up_shows_summary_and_ctrl_c_stops_everything(instance: Instance) -> None:
    _, st = instance.status()
    pids = [info["pid"] for info in st["services"].values()]
    assert pids, "the platform should be running from the previous test"
    proc = subprocess.Popen(
        [*COELHO, "up", "--interval", "1"],
        env=instance.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    summary = ""
    deadline = time.monotonic() + 240
    try:
        for line in proc.stdout:
            if " healthy " in line and "/" in line:
                summary = line
                break
            assert time.monotonic() < deadline, "no summary line"
    finally:
        proc.send_signal(2)  # Ctrl-C
        try:
            out, _ = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate(timeout=30)
            pytest.fail(f"`coelho up` did not stop within 240 s of Ctrl-C; its output:\n{out[-4000:]}")
    counts = re.search(r"healthy (\d+)/(\d+)", summary)
    assert counts and counts[1] == counts[2] and int(counts[1]) >= len(pids), summary
    assert proc.returncode == 0, out
    assert "stopped" in out
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
    assert not [p for p in _all_ports(instance.settings, list(BY_NAME)) if port_in_use("127.0.0.1", p)]


def test_down_purge_deletes_data(instance: Instance) -> None:
    down = instance.run("down", "--purge", timeout=120)
    assert down.returncode == 0, down.stderr
    assert not instance.settings.data_dir.exists()
    ports = _all_ports(instance.settings, list(BY_NAME))
    assert not [p for p in ports if port_in_use("127.0.0.1", p)]


def test_port_in_use_on_the_command_line(tmp_path: Path) -> None:
    s = Settings.load().with_free_ports(tmp_path / "d")
    env = {**os.environ, **s.to_environ()}
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", s.ports["kafka"]))
        blocker.listen()
        t0 = time.monotonic()
        proc = subprocess.run([*COELHO, "up", "--detach"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    first = proc.stderr.strip().splitlines()[0]
    assert first.startswith(f"error: kafka: port {s.ports['kafka']} on 127.0.0.1 is already in use"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - t0 < 60
    ports = _all_ports(s, list(BY_NAME))
    assert not [p for p in ports if p != s.ports["kafka"] and port_in_use("127.0.0.1", p)]
