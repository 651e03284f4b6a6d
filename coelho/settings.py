"""Platform settings: every port, address, credential and directory in one place.

Values come, in increasing priority, from the defaults below, the optional `coelho.toml` at the project root
(or the file named by COELHO_CONFIG), and environment variables. The environment variables that configure a
function (REDIS_URL, KAFKA_BOOTSTRAP_SERVERS, MLFLOW_TRACKING_URI, S3_ENDPOINT_URL, ...) are the same names a
Knative Service sets in its pod, so a function reads its configuration the same way in both places.

>>> s = Settings.load(environ={"COELHO_PORT_REDIS": "7000"})
>>> s.ports["redis"], s.redis_url
(7000, 'redis://127.0.0.1:7000/0')
"""

from __future__ import annotations

import os
import random
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

# Documented defaults (README "Configuration"). Each can be changed in coelho.toml [ports] or with
# COELHO_PORT_<NAME> (upper case, e.g. COELHO_PORT_MLFLOW=5001).
DEFAULT_PORTS: dict[str, int] = {
    "kafka": 19092,  # Tansu, Kafka protocol
    "s3": 18333,  # SeaweedFS S3 API (MinIO-compatible)
    "seaweed_master": 19333,
    "seaweed_volume": 18340,
    "seaweed_filer": 18888,
    "seaweed_admin": 23646,
    "redis": 16379,
    "mlflow": 15000,
    "prometheus": 19090,
    "broker": 18090,  # local router: Knative Broker ingress (CloudEvents over HTTP)
    "router_metrics": 18091,
    "learn": 18081,
    "predict": 18082,
    "checkpoint": 18083,
    "lake": 18084,
    "chat": 18085,
    "sql": 18087,  # SQL over the lake's Delta tables
    "producer_tfd": 18101,  # producers' Prometheus metrics
    "producer_eta": 18102,
    "producer_ecci": 18103,
    "dashboard": 15006,
}

BUCKETS = ("mlflow-artifacts", "delta-lake", "raw-data", "kafka-log")


@dataclass(frozen=True)
class Settings:
    """Resolved configuration of one platform instance."""

    data_dir: Path = PROJECT_ROOT / ".coelho"
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    host: str = HOST
    s3_access_key: str = "coelho"
    s3_secret_key: str = "coelho-secret-key"
    kafka_storage: str = "s3"  # "s3" (durable, on the S3 server) or "memory"
    namespace: str = "coelho"  # Knative namespace the manifests are read for
    producer_rate: float = 3.0  # events/s per producer started by `coelho up`
    anthropic_model: str = "claude-sonnet-4-5"
    redis_maxmemory: str = "1gb"  # Redis refuses writes past this (noeviction): never silently drops model state
    redis_appendfsync: str = "everysec"  # "always" fsyncs every write (docs/adr/0101-redis-memory-and-fsync.md)

    # --- derived addresses -------------------------------------------------------------------------
    def url(self, service: str, scheme: str = "http") -> str:
        return f"{scheme}://{self.host}:{self.ports[service]}"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.ports['kafka']}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.host}:{self.ports['redis']}/0"

    @property
    def s3_endpoint(self) -> str:
        return self.url("s3")

    @property
    def mlflow_uri(self) -> str:
        return self.url("mlflow")

    @property
    def broker_url(self) -> str:
        return self.url("broker")

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def function_env(self) -> dict[str, str]:
        """The environment a function process reads; a Knative Service sets the same names."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "REDIS_URL": self.redis_url,
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
            "S3_ENDPOINT_URL": self.s3_endpoint,
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
            "AWS_ACCESS_KEY_ID": self.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "BROKER_URL": self.broker_url,
            "LEARN_URL": self.url("learn"),
            "PREDICT_URL": self.url("predict"),
            "CHECKPOINT_URL": self.url("checkpoint"),
            "SQL_URL": self.url("sql"),
            "LAKE_URL": self.url("lake"),
            "PROMETHEUS_URL": self.url("prometheus"),
            "ANTHROPIC_MODEL": self.anthropic_model,
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }

    # --- loading -----------------------------------------------------------------------------------
    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, config_file: Path | None = None) -> Settings:
        env = os.environ if environ is None else environ
        cfg_path = config_file or Path(env.get("COELHO_CONFIG", PROJECT_ROOT / "coelho.toml"))
        raw: dict[str, object] = {}
        if cfg_path.exists():
            raw = tomllib.loads(cfg_path.read_text())
        ports = dict(DEFAULT_PORTS)
        file_ports = raw.get("ports", {})
        if isinstance(file_ports, dict):
            ports.update({str(k): int(v) for k, v in file_ports.items()})
        for name in list(ports):
            value = env.get(f"COELHO_PORT_{name.upper()}")
            if value:
                ports[name] = int(value)
        base = cls()
        data_dir = Path(str(env.get("COELHO_DATA_DIR", raw.get("data_dir", base.data_dir))))
        if not data_dir.is_absolute():
            data_dir = PROJECT_ROOT / data_dir
        return replace(
            base,
            data_dir=data_dir,
            ports=ports,
            s3_access_key=env.get("COELHO_S3_ACCESS_KEY", str(raw.get("s3_access_key", base.s3_access_key))),
            s3_secret_key=env.get("COELHO_S3_SECRET_KEY", str(raw.get("s3_secret_key", base.s3_secret_key))),
            kafka_storage=env.get("COELHO_KAFKA_STORAGE", str(raw.get("kafka_storage", base.kafka_storage))),
            namespace=env.get("COELHO_NAMESPACE", str(raw.get("namespace", base.namespace))),
            producer_rate=float(env.get("COELHO_PRODUCER_RATE", str(raw.get("producer_rate", base.producer_rate)))),
            anthropic_model=env.get("ANTHROPIC_MODEL", str(raw.get("anthropic_model", base.anthropic_model))),
            redis_maxmemory=env.get("COELHO_REDIS_MAXMEMORY", str(raw.get("redis_maxmemory", base.redis_maxmemory))),
            redis_appendfsync=env.get(
                "COELHO_REDIS_APPENDFSYNC", str(raw.get("redis_appendfsync", base.redis_appendfsync))
            ),
        )

    def with_free_ports(self, data_dir: Path) -> Settings:
        """A copy on ports nobody listens on and its own data directory (tests, several instances)."""
        return replace(self, data_dir=data_dir, ports={name: free_port() for name in self.ports})

    def to_environ(self) -> dict[str, str]:
        """Environment variables that make Settings.load() in a child process return these settings."""
        env = {f"COELHO_PORT_{k.upper()}": str(v) for k, v in self.ports.items()}
        env.update(
            COELHO_DATA_DIR=str(self.data_dir),
            COELHO_S3_ACCESS_KEY=self.s3_access_key,
            COELHO_S3_SECRET_KEY=self.s3_secret_key,
            COELHO_KAFKA_STORAGE=self.kafka_storage,
            COELHO_NAMESPACE=self.namespace,
            COELHO_PRODUCER_RATE=str(self.producer_rate),
            COELHO_REDIS_MAXMEMORY=self.redis_maxmemory,
            COELHO_REDIS_APPENDFSYNC=self.redis_appendfsync,
        )
        return env


_handed_out: set[int] = set()
_pick = random.SystemRandom()  # not the `random` module's state: tests seed it, and test processes run side by side


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (where outgoing connections take their source ports)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


# `coelho up`'s default ports and their Seaweed gRPC siblings: a test platform never takes one.
_DEFAULTS_AND_SIBLINGS = frozenset(DEFAULT_PORTS.values()) | frozenset(p + 10000 for p in DEFAULT_PORTS.values())


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and not handed out before by this process.

    Chosen below the kernel's ephemeral range: a port the kernel hands out (bind to port 0) can be taken as the
    source port of any outgoing connection before the service binds it (CI saw "port already in use by python").
    Seaweed derives a gRPC port as port+10000, so both stay below the range and are checked free.
    """
    high = _ephemeral_low() - 10000 - 1
    low = min(10000, high - 1000)
    for _ in range(5000):
        port = _pick.randint(low, high)
        if any(p in _handed_out or p in _DEFAULTS_AND_SIBLINGS for p in (port, port + 10000)):
            continue
        if _bindable(port) and _bindable(port + 10000):
            _handed_out.update((port, port + 10000))
            return port
    raise RuntimeError(f"no free TCP port pair between {low} and {high + 10000} on {HOST}")
