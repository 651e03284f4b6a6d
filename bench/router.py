"""Local router benchmark: events/s through one Trigger, and the router's added latency per event.

1. Throughput: N CloudEvents (binary Kafka mode) are written to the Broker topic, then the router (a
   subprocess, `python -m eventing.router`) delivers them through one parallel Trigger to a subscriber
   (a separate asyncio process) that answers 200 at once. events/s = N / (last receipt - first receipt).
   The router's CPU time per event comes from psutil.
2. Overhead: events are produced at a steady rate with their send time in an attribute; the subscriber
   records receipt - send. The minimal pipeline without the router (one kafka-python consumer, same fetch
   settings, posting each record with http.client) reads the same records at the same time in its own
   consumer group, so both see the same machine load. overhead = median(router) - median(direct).

Prints one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MANIFESTS = """
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default, namespace: coelho, annotations: {eventing.knative.dev/broker.class: Kafka}}
spec:
  delivery: {retry: 3, backoffPolicy: exponential, backoffDelay: PT0.1S}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: bench, namespace: coelho}
spec:
  broker: default
  filter: {attributes: {type: com.coelho.realtime.bench.record}}
  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: coelho-bench}}
"""


# --- the subscriber process ---------------------------------------------------------------------------
def serve(port: int) -> None:
    stats: dict[str, object] = {"count": 0, "first": None, "last": None, "latencies": [], "direct": []}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                now = time.time()
                length = 0
                sent = None
                direct = False
                is_get = head.startswith(b"GET")
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    lname = name.strip().lower()
                    if lname == b"content-length":
                        length = int(value)
                    elif lname == b"ce-benchsent":
                        sent = float(value)
                    elif lname == b"x-bench-direct":
                        direct = True
                if length:
                    await reader.readexactly(length)
                if is_get:
                    body = json.dumps(stats).encode()
                    if b"reset" in head.split(b"\r\n")[0]:
                        stats.update(count=0, first=None, last=None, latencies=[], direct=[])
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                elif direct:
                    if sent is not None:
                        stats["direct"].append(now - sent)  # type: ignore[attr-defined]
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                else:
                    stats["count"] = int(stats["count"]) + 1  # type: ignore[call-overload]
                    stats["first"] = stats["first"] or now
                    stats["last"] = now
                    if sent is not None:
                        stats["latencies"].append(now - sent)  # type: ignore[attr-defined]
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def stats(port: int, reset: bool = False) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats{'?reset' if reset else ''}") as resp:
        return json.loads(resp.read())


# --- the benchmark --------------------------------------------------------------------------------------
def bench_event(i: int, sent: float | None = None) -> tuple[bytes, list[tuple[str, bytes]], bytes]:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", f"bench-{i}".encode()),
        ("ce_source", b"/coelho/bench"),
        ("ce_type", b"com.coelho.realtime.bench.record"),
        ("ce_partitionkey", f"user-{i % 500}".encode()),
        ("content-type", b"application/json"),
    ]
    if sent is not None:
        headers.append(("ce_benchsent", repr(sent).encode()))
    body = json.dumps({"i": i, "amount": 12.5, "user_id": f"user-{i % 500}"}).encode()
    return f"user-{i % 500}".encode(), headers, body


def produce_at_rate(producer, topic: str, start: int, count: int, rate: float) -> None:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    for n in range(count):
        target = t0 + n / rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        key, headers, body = bench_event(start + n, time.time())
        producer.send(topic, key=key, value=body, headers=headers)
        producer.flush()


def direct_pipeline(bootstrap: str, topic: str, url_port: int, stop: threading.Event, ready: threading.Event) -> None:
    """The minimum without a router: consume, post, commit (its posts carry x-bench-direct)."""
    from kafka import KafkaConsumer

    from eventing.router.consumer import FETCH_MAX_WAIT_MS

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id="bench-direct",
        enable_auto_commit=False,
        auto_offset_reset="latest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    conn = http.client.HTTPConnection("127.0.0.1", url_port)
    while not stop.is_set():
        batches = consumer.poll(timeout_ms=50)
        if consumer.assignment():
            ready.set()
        for records in batches.values():
            for r in records:
                headers = {("ce-" + k[3:] if k.startswith("ce_") else k): v.decode() for k, v in r.headers}
                headers["x-bench-direct"] = "1"
                conn.request("POST", "/", body=r.value, headers=headers)
                conn.getresponse().read()
        consumer.commit()
    consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=300.0, help="events/s in the latency phase")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each latency phase")
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    import psutil
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    from coelho.settings import Settings, free_port
    from eventing.router.testing import EmbeddedKafka

    kafka = EmbeddedKafka().start()
    tmp = Path(tempfile.mkdtemp(prefix="coelho-bench-router-"))
    (tmp / "manifests").mkdir()
    (tmp / "manifests" / "bench.yaml").write_text(MANIFESTS)
    settings = Settings().with_free_ports(tmp / "data")
    settings.ports["kafka"] = kafka.port
    sub_port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen([sys.executable, __file__, "--serve", str(sub_port)]))
        topic = "knative-broker-coelho-default"
        admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        admin.create_topics([NewTopic(topic, 6, 1)])
        admin.close()
        producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=5, batch_size=256 * 1024)
        t = time.perf_counter()
        for i in range(args.events):
            key, headers, body = bench_event(i)
            producer.send(topic, key=key, value=body, headers=headers)
        producer.flush()
        produce_rate = args.events / (time.perf_counter() - t)

        env = {**os.environ, **settings.to_environ()}
        router = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "eventing.router",
                "--manifests",
                str(tmp / "manifests"),
                "--workers",
                str(args.workers),
                "--subscriber",
                f"coelho-bench=http://127.0.0.1:{sub_port}/",
                "--log-level",
                "WARNING",
            ],
            cwd=ROOT,
            env=env,
        )
        procs.append(router)
        proc = psutil.Process(router.pid)
        deadline = time.monotonic() + 180
        s = {"count": 0}
        while time.monotonic() < deadline:
            time.sleep(0.5)
            s = stats(sub_port)
            if s["count"] >= args.events:
                break
        cpu = proc.cpu_times()
        router_cpu_s = cpu.user + cpu.system
        delivered = int(s["count"])
        throughput = delivered / max(1e-9, (s["last"] or 0) - (s["first"] or 0))

        # Latency phase: the router and the direct pipeline read the same records at the same time, so both see
        # the same machine load; the subscriber keeps their latencies apart.
        stop = threading.Event()
        ready = threading.Event()
        direct = threading.Thread(
            target=direct_pipeline, args=(kafka.bootstrap, topic, sub_port, stop, ready), daemon=True
        )
        direct.start()
        ready.wait(60)
        time.sleep(1.0)
        stats(sub_port, reset=True)
        n = int(args.rate * args.seconds)
        produce_at_rate(producer, topic, 10_000_000, n, args.rate)
        time.sleep(1.5)
        latency_stats = stats(sub_port, reset=True)
        routed, baseline = latency_stats["latencies"], latency_stats["direct"]
        stop.set()
        direct.join(10)
        router.terminate()
        router.wait(20)
        producer.close()

        routed_ms = statistics.median(routed) * 1000 if routed else None
        direct_ms = statistics.median(baseline) * 1000 if baseline else None
        result = {
            "bench": "router",
            "events": args.events,
            "delivered": delivered,
            "events_per_s": round(throughput, 1),
            "router_cpu_ms_per_event": round(router_cpu_s * 1000 / max(delivered, 1), 3),
            "preload_produce_events_per_s": round(produce_rate, 1),
            "latency_phase_rate": args.rate,
            "latency_samples": [len(routed), len(baseline)],
            "median_e2e_ms_router": round(routed_ms, 3) if routed_ms else None,
            "median_e2e_ms_direct": round(direct_ms, 3) if direct_ms else None,
            "p99_e2e_ms_router": round(sorted(routed)[int(len(routed) * 0.99)] * 1000, 3) if routed else None,
            "router_overhead_ms_median": round(routed_ms - direct_ms, 3) if routed_ms and direct_ms else None,
            "router_events_per_cpu_s": round(delivered / max(router_cpu_s, 1e-9), 1),
            "workers": args.workers,
            "cores": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 1),
        }
        print(json.dumps(result))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        kafka.stop()


if __name__ == "__main__":
    main()
