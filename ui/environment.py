"""Where the dashboard finds the platform: the environment when it names a service, else the embedded platform's
Settings.

On a cluster the dashboard's Deployment gets the coelho-config ConfigMap (knative/config/coelho-config.yaml):
REDIS_URL (its own Redis user), PREDICT_URL, CHAT_URL, SQL_URL, PROMETHEUS_URL, LEARN_URL, CHECKPOINT_URL,
LAKE_URL and BROKER_URL (the Broker's ingress, namespace and broker name included), and HOST, the address it
binds (0.0.0.0 in the pod). The embedded platform sets the same names to its own addresses (coelho/services.py),
so both read alike; a name that is unset or empty falls back to the Settings.

    >>> base = Settings.load(environ={})
    >>> s = from_environ(base, {"PREDICT_URL": "http://coelho-predict.coelho.svc.cluster.local/"})
    >>> s.url("predict"), s.url("sql") == base.url("sql"), s.redis_url == base.redis_url
    ('http://coelho-predict.coelho.svc.cluster.local', True, True)
    >>> broker_ingress(s) == f"{base.broker_url}/coelho/default"
    True
    >>> broker_ingress(from_environ(base, {"BROKER_URL": "http://broker-ingress/coelho/default"}))
    'http://broker-ingress/coelho/default'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from coelho.settings import Settings
from eventing.domains import DOMAINS

__all__ = ["URL_ENV", "DashboardSettings", "bind_address", "broker_ingress", "from_environ"]

# service -> the variable naming its base URL
URL_ENV = {
    "predict": "PREDICT_URL",
    "chat": "CHAT_URL",
    "sql": "SQL_URL",
    "prometheus": "PROMETHEUS_URL",
    "learn": "LEARN_URL",
    "checkpoint": "CHECKPOINT_URL",
    "lake": "LAKE_URL",
}
OTHER_ENV = ("REDIS_URL", "BROKER_URL")


@dataclass(frozen=True)
class DashboardSettings(Settings):
    """Settings whose service URLs, Redis URL and Broker ingress come from `environ_urls` where it has them."""

    environ_urls: Mapping[str, str] = field(default_factory=dict)

    def url(self, service: str, scheme: str = "http") -> str:
        value = self.environ_urls.get(URL_ENV.get(service, ""))
        if not value:
            return super().url(service, scheme)
        # LEARN_URL may be a template (one learn-one per domain, coelho-learn-<domain>): one domain's stands in.
        return value.replace("{domain}", next(iter(DOMAINS))).rstrip("/")

    @property
    def redis_url(self) -> str:
        return self.environ_urls.get("REDIS_URL") or super().redis_url


def from_environ(settings: Settings, environ: Mapping[str, str] | None = None) -> DashboardSettings:
    """`settings` with the addresses the environment names (os.environ by default)."""
    env = os.environ if environ is None else environ
    names = [*URL_ENV.values(), *OTHER_ENV]
    found = {name: env[name].strip() for name in names if env.get(name, "").strip()}
    values = {f.name: getattr(settings, f.name) for f in fields(settings) if f.name != "environ_urls"}
    return DashboardSettings(**values, environ_urls=found)


def broker_ingress(settings: Settings) -> str:
    """Where the dashboard posts events: BROKER_URL when the environment set it (the full ingress URL, as the
    functions read it), else the embedded router's ingress of the settings' namespace."""
    if isinstance(settings, DashboardSettings) and settings.environ_urls.get("BROKER_URL"):
        return settings.environ_urls["BROKER_URL"].rstrip("/")
    return f"{settings.broker_url}/{settings.namespace}/default"


def bind_address(settings: Settings, environ: Mapping[str, str] | None = None) -> str:
    """The address the dashboard listens on: HOST (0.0.0.0 in the pod, for its Service and probes), else the
    settings' host (127.0.0.1)."""
    env = os.environ if environ is None else environ
    return env.get("HOST", "").strip() or settings.host
