"""The ONE table of services the embedded runtime runs.

Each row says how to start a process (argv builder + environment), which port it listens on, how to tell it is
healthy, what it needs first, where Prometheus scrapes it, and — for Python services — which module it runs.
Every row runs: a row whose module is missing makes the start fail with its name (coelho.runtime.Platform.plan).
Adding a service to the platform = adding a row to SERVICES.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from coelho.engines import BinaryMissing, prometheus_bin, redis_bin, tansu_bin, weed_bin
from coelho.health import Health
from coelho.settings import BUCKETS, PROJECT_ROOT, Settings
from eventing.domains import DOMAINS as _DECLARED

DOMAINS = tuple(_DECLARED)  # one producer per declared domain (eventing/domains: River is not imported)


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
