"""The dashboard on a cluster: the addresses from the environment (coelho-config), the login names the
Deployment sets (knative/apps/dashboard.yaml), the bind address; the embedded platform's Settings otherwise."""

from __future__ import annotations

from pathlib import Path

import yaml

from coelho.settings import PROJECT_ROOT, Settings
from ui.app import auth_options
from ui.environment import bind_address, broker_ingress, from_environ

CLUSTER = {
    "REDIS_URL": "redis://dashboard:pw@coelho-redis.coelho.svc.cluster.local:6379/0",
    "PREDICT_URL": "http://coelho-predict.coelho.svc.cluster.local",
    "CHAT_URL": "http://coelho-chat.coelho.svc.cluster.local/",
    "SQL_URL": "http://coelho-sql.coelho.svc.cluster.local",
    "PROMETHEUS_URL": "http://prometheus.monitoring.svc.cluster.local:9090",
    "LEARN_URL": "http://coelho-learn-{domain}.coelho.svc.cluster.local",
    "BROKER_URL": "http://kafka-broker-ingress.knative-eventing.svc.cluster.local/coelho/default",
    "HOST": "0.0.0.0",  # noqa: S104
}


def test_the_environment_names_the_services_and_the_settings_fill_in(tmp_path: Path) -> None:
    base = Settings.load(environ={}, config_file=tmp_path / "none.toml")
    cluster = from_environ(base, CLUSTER)
    assert cluster.redis_url == CLUSTER["REDIS_URL"]
    assert cluster.url("predict") == CLUSTER["PREDICT_URL"]
    assert cluster.url("chat") == "http://coelho-chat.coelho.svc.cluster.local"
    assert cluster.url("sql") == CLUSTER["SQL_URL"] and cluster.url("prometheus") == CLUSTER["PROMETHEUS_URL"]
    assert cluster.url("learn") == "http://coelho-learn-tfd.coelho.svc.cluster.local"
    assert broker_ingress(cluster) == CLUSTER["BROKER_URL"]
    assert bind_address(cluster, CLUSTER) == "0.0.0.0"  # noqa: S104
    assert cluster.url("mlflow") == base.url("mlflow") and cluster.ports == base.ports  # not named: the Settings'

    local = from_environ(base, {"PREDICT_URL": " ", "HOST": ""})
    for service in ("predict", "chat", "sql", "prometheus", "learn"):
        assert local.url(service) == base.url(service)
    assert local.redis_url == base.redis_url and bind_address(local, {}) == "127.0.0.1"
    assert broker_ingress(local) == broker_ingress(base) == f"{base.broker_url}/{base.namespace}/default"


def _dashboard_env_names() -> set[str]:
    docs = yaml.safe_load_all((PROJECT_ROOT / "knative" / "apps" / "dashboard.yaml").read_text())
    deployment = next(d for d in docs if d and d.get("kind") == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {env["name"] for env in container.get("env", [])}


def test_the_login_reads_the_names_the_deployment_sets() -> None:
    names = _dashboard_env_names()
    user, password, cookie = "COELHO_DASHBOARD_USER", "COELHO_DASHBOARD_PASSWORD", "COELHO_DASHBOARD_COOKIE_SECRET"
    assert {user, password, cookie} <= names
    options = auth_options({user: "coelho", password: "s3cret", cookie: "signing-key"})
    assert options == {"basic_auth": {"coelho": "s3cret"}, "cookie_secret": "signing-key"}
    options = auth_options({password: "s3cret", cookie: "documented"})
    assert options == {"basic_auth": "s3cret", "cookie_secret": "documented"}  # any user name, as on one machine
    assert auth_options({user: "coelho"}) == {}  # no password: no login (the local default)
