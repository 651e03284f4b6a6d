"""What the Knative Services say, not only that they are well-formed (ADR 0021, ADR 0105):

- predict-one scales on concurrency (KPA, a target, a max scale) above one warm replica (min scale 1: a cold start
  would outlast the prediction Triggers' timeout);
- learn-one is one Service per domain, each with one warm replica at least, and keeps per-model order: every
  Trigger into it ordered (one event per partition key at a time), the KafkaSources into the Broker ordered too,
  and every event carries the partition key that ordering is per;
- every function Service: readiness and liveness probes on the paths the function serves, resource requests and
  limits, env from the ConfigMap coelho-config and named keys of Secrets (knative/secrets/), port 8080.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
import yaml

from eventing.domains import DOMAINS
from eventing.router.filters import compile_filter
from eventing.router.manifests import Manifests
from tests.knative.knative_schemas import KNATIVE, documents

NS = "coelho"
AUTOSCALING = "autoscaling.knative.dev/"
ORDERED_ANNOTATION = "kafka.eventing.knative.dev/delivery.order"
FUNCTION_SERVICES = sorted(name for _, name in Manifests.load(KNATIVE).services)


def function_of(service: str) -> str:
    """The function a Service runs: coelho-predict -> predict, coelho-learn-tfd (one per domain) -> learn."""
    name = service.removeprefix("coelho-")
    return name.rsplit("-", 1)[0] if name.rsplit("-", 1)[-1] in DOMAINS else name


@pytest.fixture(scope="module")
def manifests() -> Manifests:
    return Manifests.load(KNATIVE)


def _service(manifests: Manifests, name: str) -> dict[str, Any]:
    assert (NS, name) in manifests.services, f"no Knative Service {name} in knative/"
    return dict(manifests.services[(NS, name)])


def _annotations(service: dict[str, Any]) -> dict[str, str]:
    """The revision template's autoscaling annotations (Knative reads them there, not on the Service)."""
    annotations = (service["spec"]["template"].get("metadata") or {}).get("annotations") or {}
    return {k.removeprefix(AUTOSCALING): v for k, v in annotations.items() if k.startswith(AUTOSCALING)}


def _container(service: dict[str, Any]) -> dict[str, Any]:
    containers = service["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one container per function"
    return dict(containers[0])


def _int(value: Any, what: str) -> int:
    assert isinstance(value, str) and re.fullmatch(r"\d+", value), f"{what}: {value!r} is not a quoted integer"
    return int(value)


_CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
_MEMORY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_MEMORY_UNITS = {
    None: 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def cpu(quantity: Any) -> float:
    """Kubernetes CPU quantity in cores: "250m" -> 0.25, "2" -> 2.0."""
    match = _CPU.match(str(quantity))
    assert match, f"not a CPU quantity: {quantity!r}"
    return float(match[1]) / (1000 if match[2] else 1)


def memory(quantity: Any) -> int:
    """Kubernetes memory quantity in bytes: "512Mi" -> 536870912."""
    match = _MEMORY.match(str(quantity))
    assert match, f"not a memory quantity: {quantity!r}"
    return int(match[1]) * _MEMORY_UNITS[match[2]]


def test_quantity_parsers() -> None:
    assert (cpu("250m"), cpu("1"), cpu("0.5")) == (0.25, 1.0, 0.5)
    assert (memory("512Mi"), memory("1Gi"), memory("1G")) == (512 * 2**20, 2**30, 10**9)


def test_every_function_has_its_service() -> None:
    assert {"coelho-learn-tfd", "coelho-predict", "coelho-checkpoint"} <= set(FUNCTION_SERVICES)
    # Every runnable function module (`python -m functions.X`) has its Service coelho-X (or coelho-X-<domain>).
    runnable = {
        m.stem for m in (KNATIVE.parent / "functions").glob("*.py") if '__name__ == "__main__"' in m.read_text()
    }
    assert runnable >= {"learn", "predict", "checkpoint"}
    assert runnable <= {function_of(s) for s in FUNCTION_SERVICES}


# --- predict-one: autoscaled on concurrency above one warm replica ----------------------------------------
@pytest.mark.parametrize("name", ["coelho-predict", *(f"coelho-predict-{d}" for d in DOMAINS)])
def test_predict_scales_on_concurrency_above_one_warm_replica(manifests: Manifests, name: str) -> None:
    service = _service(manifests, name)
    a = _annotations(service)
    assert a.get("class", "kpa.autoscaling.knative.dev") == "kpa.autoscaling.knative.dev"  # KPA: the one scaling to 0
    assert a.get("metric") == "concurrency"
    target = _int(a.get("target"), "target")
    assert target >= 1
    utilization = _int(a.get("target-utilization-percentage", "70"), "target-utilization-percentage")
    assert 1 <= utilization <= 100
    # Never to zero: its Triggers wait 10 s per try, less than a cold start (import, load snapshots, catch up).
    assert _int(a.get("min-scale"), "min-scale") >= 1, "predict-one keeps a warm replica"
    max_scale = _int(a.get("max-scale"), "max-scale")
    assert max_scale >= 2, "predict-one scales out"
    assert "initial-scale" not in a or _int(a["initial-scale"], "initial-scale") <= max_scale
    # The hard limit per replica (0 = unlimited) is not below the soft target it scales on.
    hard = int(service["spec"]["template"]["spec"].get("containerConcurrency", 0))
    assert hard == 0 or hard >= target, (hard, target)
    retention = a.get("scale-to-zero-pod-retention-period")
    assert retention is None or re.fullmatch(r"\d+(ms|s|m|h)", retention), retention


def test_predict_triggers_are_parallel(manifests: Manifests) -> None:
    predict = [t for t in manifests.triggers.values() if str(t.subscriber.name).startswith("coelho-predict")]
    assert {(t.name, t.subscriber.name) for t in predict} == {(f"{d}-predict", f"coelho-predict-{d}") for d in DOMAINS}
    assert not any(t.ordered for t in predict)


# --- learn-one: one Service per domain, per-model order -------------------------------------------------
def test_learn_is_one_warm_service_per_domain(manifests: Manifests) -> None:
    learn = sorted(s for s in FUNCTION_SERVICES if function_of(s) == "learn")
    assert learn == sorted(f"coelho-learn-{d}" for d in DOMAINS)
    for name in learn:
        a = _annotations(_service(manifests, name))
        assert _int(a.get("min-scale"), "min-scale") == 1, f"{name} never scales to zero (warm models)"
        # Replicas of a domain share its Redis log (tests/functions/test_scaling_replicas.py): a few may run.
        assert 1 <= _int(a.get("max-scale"), "max-scale") <= 3, name
        assert _int(a.get("initial-scale", "1"), "initial-scale") == 1


def _event_attributes(domain_name: str, kind: str) -> dict[str, str]:
    """The attributes of a real event of `domain_name` of `kind`, as the producer writes it (first one found)."""
    from producers.generators import make_generator
    from producers.kafka_record import to_cloudevent

    domain = DOMAINS[domain_name]
    try:
        generator = make_generator(domain_name, seed=11, delayed_labels=True)
    except ValueError:
        generator = make_generator(domain_name, seed=11)
    for event in itertools.islice(iter(generator), 5000):
        ce = to_cloudevent(domain_name, event)
        if ce.get_type() == domain.type(kind):
            return {str(k): str(v) for k, v in ce.get_attributes().items()}
    raise AssertionError(f"no {kind} event of {domain_name} in 5000 generated events")


@pytest.mark.parametrize(("domain", "kind"), [*[(d, "record") for d in DOMAINS], ("tfd", "label")])
def test_every_event_learn_takes_goes_through_an_ordered_trigger_by_partition_key(
    manifests: Manifests, domain: str, kind: str
) -> None:
    attributes = _event_attributes(domain, kind)
    # Ordered delivery is per partition key: the producer's events carry the domain's entity key as partitionkey.
    assert attributes.get("partitionkey"), f"a {domain} {kind} event carries no partitionkey: {attributes}"
    assert attributes.get("domain") == domain
    matching = [t for t in manifests.triggers.values() if compile_filter(t.filter_attributes, t.filters)(attributes)]
    to_learn = [t for t in matching if str(t.subscriber.name).startswith("coelho-learn")]
    assert len(to_learn) == 1, f"{domain} {kind} goes to learn-one through {[t.name for t in to_learn]}"
    assert to_learn[0].ordered, f"Trigger {to_learn[0].name} into learn-one is not ordered"
    assert to_learn[0].subscriber.name == f"coelho-learn-{domain}", f"{domain} goes to {to_learn[0].subscriber.name}"


def test_ordered_annotation_is_spelled_as_knative_reads_it() -> None:
    """The raw annotation (not only the router's reading of it): a typo here is silently unordered on a cluster."""
    for _, doc in documents():
        if doc["kind"] != "Trigger":
            continue
        annotations = doc["metadata"].get("annotations") or {}
        if doc["spec"]["subscriber"]["ref"]["name"].startswith("coelho-learn"):
            assert annotations.get(ORDERED_ANNOTATION) == "ordered", doc["metadata"]["name"]
        odd = [k for k in annotations if "delivery" in k and "order" in k and k != ORDERED_ANNOTATION]
        assert not odd, f"{doc['metadata']['name']}: misspelled ordering annotation {odd}"


def test_kafka_sources_feed_the_broker_in_order() -> None:
    """A KafkaSource is ordered unless `spec.ordering: unordered`; the Broker then keeps each key's order."""
    sources = [doc for _, doc in documents() if doc["kind"] == "KafkaSource"]
    assert sources
    for doc in sources:
        assert doc["spec"].get("ordering", "ordered") == "ordered", doc["metadata"]["name"]


# --- every function Service -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FUNCTION_SERVICES)
def test_service_probes_are_on_the_functions_health_paths(manifests: Manifests, name: str) -> None:
    from functions.middleware.app import create_app

    container = _container(_service(manifests, name))
    app = create_app("probe-check", lambda event: None, accepts=[]).test_client()
    for probe, path in (("readinessProbe", "/health/readiness"), ("livenessProbe", "/health/liveness")):
        spec = container.get(probe)
        assert spec, f"{name} has no {probe}"
        get = spec.get("httpGet") or {}
        assert get.get("path") == path, f"{name} {probe} on {get.get('path')!r}"
        assert get.get("port") in (None, 8080, "http1"), f"{name} {probe} on port {get.get('port')!r}"
        assert app.get(path).status_code == 200, f"the functions' app does not serve {path}"
        assert int(spec.get("periodSeconds", 10)) >= 1 and int(spec.get("failureThreshold", 3)) >= 1


@pytest.mark.parametrize("name", FUNCTION_SERVICES)
def test_service_has_resource_requests_and_limits(manifests: Manifests, name: str) -> None:
    resources = _container(_service(manifests, name)).get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    for key in ("cpu", "memory"):
        assert key in requests, f"{name}: no {key} request"
        assert key in limits, f"{name}: no {key} limit"
    assert 0 < cpu(requests["cpu"]) <= cpu(limits["cpu"]), (name, requests, limits)
    assert 0 < memory(requests["memory"]) <= memory(limits["memory"]), (name, requests, limits)


@pytest.mark.parametrize("name", FUNCTION_SERVICES)
def test_service_env_comes_from_the_configmap_and_named_secret_keys(manifests: Manifests, name: str) -> None:
    container = _container(_service(manifests, name))
    env_from = container.get("envFrom") or []
    assert env_from == [{"configMapRef": {"name": "coelho-config"}}], f"{name} envFrom {env_from}"
    assert manifests.config_maps.get((NS, "coelho-config")), "no ConfigMap coelho-config with data in knative/"
    # Credentials: one key at a time from a generated Secret (knative/kustomization.yaml secretGenerator), never a
    # whole Secret, never optional (a missing one would start the function without it).
    generated = {g["name"] for g in yaml.safe_load((KNATIVE / "kustomization.yaml").read_text())["secretGenerator"]}
    for env in container.get("env", []):
        ref = (env.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            assert ref["name"] in generated and not ref.get("optional"), (name, env["name"], ref)


@pytest.mark.parametrize("name", FUNCTION_SERVICES)
def test_service_listens_on_8080(manifests: Manifests, name: str) -> None:
    service = _service(manifests, name)
    ports = _container(service).get("ports") or []
    assert [(p.get("containerPort"), p.get("name", "http1")) for p in ports] == [(8080, "http1")], name
    assert _container(service)["command"] == ["python", "-m", f"functions.{function_of(name)}"]


def test_learn_triggers_ask_for_no_reply_and_nothing_routes_learned_events(manifests: Manifests) -> None:
    """learn-one's `learned` reply is not written back into the Broker (ADR 0076): each learn Trigger's subscriber
    is `coelho-learn` + `/?reply=none`, resolved by the router as Knative resolves a relative `uri` against a
    `ref`; and no Trigger filters on `.learned`, so no subscriber misses what is no longer sent."""
    from coelho.settings import Settings
    from eventing.router.router import Router

    router = Router(Settings.load(), serve_metrics=False)
    learn_url = router.service_url("coelho-learn").rstrip("/")
    to_learn = [t for t in manifests.triggers.values() if str(t.subscriber.name).startswith("coelho-learn")]
    assert len(to_learn) == 2 * len(DOMAINS) + 1  # records and raw KafkaSource records of every domain, tfd labels
    for trigger in to_learn:
        assert router.resolve_url(trigger.subscriber) == learn_url + "/?reply=none", trigger.name
    for trigger in manifests.triggers.values():
        wanted = str(trigger.filter_attributes.get("type", ""))
        assert not wanted.endswith(".learned"), f"{trigger.name} subscribes to learned events, which are not sent"
