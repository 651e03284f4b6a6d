"""Which platform services are up, checked the way the runtime checks them (coelho.services' table).

The dashboard polls this in one background thread per server process (see ui.live), never in a page's
request, so a service that hangs cannot freeze the pages.
"""

from __future__ import annotations

from dataclasses import dataclass

from coelho.settings import Settings

# Services whose absence the dashboard must always report: the pages cannot work without them.
ALWAYS_EXPECTED = ("redis", "predict")

# Readable names for the banner and the Home page.
LABELS = {
    "s3": "S3 (SeaweedFS)",
    "kafka": "Kafka broker",
    "redis": "Redis",
    "mlflow": "MLflow",
    "prometheus": "Prometheus",
    "router": "Event router / Broker ingress",
    "learn": "learn-one function",
    "predict": "predict-one function",
    "checkpoint": "checkpoint function",
    "chat": "chat function",
    "lake": "lake function",
    "sql": "SQL function (lake)",
    "producer_tfd": "TFD producer",
    "producer_eta": "ETA producer",
    "producer_ecci": "ECCI producer",
    "dashboard": "Dashboard",
}


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    label: str
    url: str
    healthy: bool
    expected: bool  # started by the platform (or essential to the pages): its absence is a problem


def _service_rows() -> list:  # type: ignore[type-arg]
    try:
        from coelho.services import SERVICES
    except Exception:  # the dashboard outlives a runtime that cannot be imported: degrade to the essentials
        return []
    return [svc for svc in SERVICES if svc.name != "dashboard"]


def started_services(settings: Settings) -> set[str]:
    """Services the runtime started for this data directory (its state file lists them until they are stopped)."""
    try:
        from coelho.runtime import Platform

        return set(Platform(settings).entries())
    except Exception:
        return set()


def check_services(settings: Settings, timeout: float = 0.5) -> list[ServiceStatus]:
    """Every known service with its health; `expected` marks those whose absence the banner reports."""
    started = started_services(settings)
    out: list[ServiceStatus] = []
    for svc in _service_rows():
        try:
            healthy = bool(svc.health.check(settings, svc.port, timeout=timeout))
        except Exception:
            healthy = False
        out.append(
            ServiceStatus(
                name=svc.name,
                label=LABELS.get(svc.name, svc.name),
                url=svc.url(settings),
                healthy=healthy,
                expected=svc.name in started or svc.name in ALWAYS_EXPECTED,
            )
        )
    return out
