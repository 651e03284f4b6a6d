"""The manifests agree with the code: Triggers name an existing Broker and subscriber, every event type a Trigger
waits for is emitted by someone, and every environment variable a function reads is set by its Service."""

from __future__ import annotations

import ast
import itertools
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from eventing.cloudevent_types import (
    BATCH_STUDY_REQUESTED,
    CHECKPOINT_REQUESTED,
    EVENT_KINDS,
    KAFKA_EVENT,
    LAKE_MAINTENANCE_REQUESTED,
    TRAINING_CONTROL,
    parse_event_type,
)
from eventing.domains import DOMAINS
from eventing.router.manifests import Manifests
from tests.knative.knative_schemas import KNATIVE, ROOT, documents

PING_TYPE = "dev.knative.sources.ping"
# Set by Knative Serving in every revision's container.
KNATIVE_PROVIDED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
FUNCTIONS = ROOT / "functions"
EMITTER_PACKAGES = ("producers", "functions", "ui", "coelho")


@pytest.fixture(scope="module")
def manifests() -> Manifests:
    return Manifests.load(KNATIVE)


@cache  # the manifests are parsed once per run, not once per parametrized check
def _all_documents() -> tuple[dict[str, Any], ...]:
    return tuple(doc for _, doc in documents())


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in _all_documents() if doc["kind"] == kind]


def _function_name(service_name: str) -> str:
    """The function a Service runs: coelho-sql -> sql, coelho-learn-tfd (learn-one, one Service per domain) -> learn."""
    name = service_name.removeprefix("coelho-")
    function, _, domain = name.rpartition("-")
    return function if domain in DOMAINS else name


def _function_module(service_name: str) -> Path:
    """functions/<name>.py, or functions/<name>/__main__.py for a function that is a package (the lake)."""
    name = _function_name(service_name)
    package_main = FUNCTIONS / name / "__main__.py"
    return package_main if package_main.exists() else FUNCTIONS / f"{name}.py"


def _function_files(service_name: str) -> frozenset[Path]:
    """The files of a function: its module, or every module of its package."""
    module = _function_module(service_name)
    return frozenset(module.parent.glob("*.py")) if module.name == "__main__.py" else frozenset({module})


# --- references -------------------------------------------------------------------------------------------
def test_every_trigger_names_an_existing_broker_and_subscriber_service(manifests: Manifests) -> None:
    raw = {doc["metadata"]["name"]: doc for doc in _by_kind("Trigger")}
    assert raw, "no Triggers in knative/"
    for name, doc in raw.items():
        spec = doc["spec"]
        assert "broker" in spec, f"Trigger {name} names no broker (Knative's webhook requires one)"
        assert ("coelho", spec["broker"]) in manifests.brokers, f"Trigger {name}: no Broker {spec['broker']}"
        ref = spec["subscriber"]["ref"]
        if ref["kind"] == "JobSink":  # a Job per event (knative/eventing/batch-jobsink.yaml)
            assert ref["apiVersion"] == "sinks.knative.dev/v1alpha1", name
            assert ("coelho", ref["name"]) in manifests.job_sinks, f"Trigger {name}: no JobSink {ref['name']}"
            continue
        assert ref["apiVersion"] == "serving.knative.dev/v1" and ref["kind"] == "Service", name
        assert ("coelho", ref["name"]) in manifests.services, f"Trigger {name}: no Knative Service {ref['name']}"


def test_every_subscribed_service_runs_an_existing_function(manifests: Manifests) -> None:
    for trigger in manifests.triggers.values():
        if trigger.subscriber.kind == "JobSink":  # its Job runs `python -m <module>`
            job = manifests.job_sinks[("coelho", str(trigger.subscriber.name))]
            assert (ROOT / (job.command[-1].replace(".", "/") + ".py")).exists(), job.command
            continue
        module = _function_module(str(trigger.subscriber.name))
        assert module.exists(), (
            f"Trigger {trigger.name} routes to {trigger.subscriber.name}, but {module} does not exist"
        )
        service = manifests.services[("coelho", str(trigger.subscriber.name))]
        command = service["spec"]["template"]["spec"]["containers"][0]["command"]
        assert command[-1] == f"functions.{_function_name(str(trigger.subscriber.name))}", command


def test_sinks_and_dead_letter_sinks_exist(manifests: Manifests) -> None:
    for broker in manifests.brokers.values():
        dls = broker.delivery.dead_letter_sink
        assert dls is not None and dls.kind == "KafkaSink"
        assert (dls.namespace, dls.name) in manifests.kafka_sinks
        assert manifests.kafka_sinks[(str(dls.namespace), str(dls.name))].topic == "coelho-dead-letters"
    for source in [*manifests.kafka_sources.values(), *manifests.ping_sources.values()]:
        assert source.sink.kind == "Broker" and (source.sink.namespace, source.sink.name) in manifests.brokers


def test_kafka_sources_cover_every_domain_topic_explicitly(manifests: Manifests) -> None:
    topics = {t for s in manifests.kafka_sources.values() for t in s.topics}
    assert topics == {d.topic for d in DOMAINS.values()}
    for raw in _by_kind("KafkaSource"):
        assert raw["spec"].get("consumerGroup") and raw["spec"].get("initialOffset") == "earliest", raw["metadata"]


def test_learning_triggers_are_ordered_and_prediction_triggers_parallel(manifests: Manifests) -> None:
    for trigger in manifests.triggers.values():
        if trigger.subscriber.name == "coelho-learn":
            assert trigger.ordered, trigger.name
        if str(trigger.subscriber.name).startswith("coelho-predict"):
            assert not trigger.ordered, trigger.name


# --- event types ------------------------------------------------------------------------------------------
def _exact_types(filters: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(filters, dict):
        for key, value in filters.items():
            if key == "exact" and isinstance(value, dict) and "type" in value:
                found.add(str(value["type"]))
            elif key != "not":
                found |= _exact_types(value)
    elif isinstance(filters, list):
        for item in filters:
            found |= _exact_types(item)
    return found


def trigger_types(doc: dict[str, Any]) -> set[str]:
    spec = doc["spec"]
    if spec.get("filters"):
        return _exact_types(spec["filters"])
    value = (spec.get("filter") or {}).get("attributes", {}).get("type")
    return {str(value)} if value else set()


@cache
def _produced_types() -> frozenset[str]:
    """Types the producers really write: run each domain's generator and convert its events as the producer does."""
    from producers.generators import make_generator
    from producers.kafka_record import to_cloudevent

    types: set[str] = set()
    for domain in DOMAINS.values():
        try:
            generator = make_generator(domain.name, seed=7, delayed_labels=True)
        except ValueError:  # a domain without a delayed label
            generator = make_generator(domain.name, seed=7)
        for event in itertools.islice(iter(generator), 2000):
            types.add(to_cloudevent(domain.name, event).get_type())
    return frozenset(types)


def _code_emitted_types(excluded: frozenset[Path]) -> frozenset[str]:
    """Types built in code outside `excluded`: `<x>.type("kind")` / `event_type(x, "kind")` calls (every domain),
    full type strings, and the platform-wide constants."""
    paths = (path for package in EMITTER_PACKAGES for path in (ROOT / package).rglob("*.py"))
    return frozenset().union(*(_file_emitted_types(path) for path in paths if path not in excluded))


@cache  # each file is parsed once, however many subscribers' exclusions it is checked under
def _file_emitted_types(path: Path) -> frozenset[str]:
    types: set[str] = set()
    constants = {
        "CHECKPOINT_REQUESTED": CHECKPOINT_REQUESTED,
        "TRAINING_CONTROL": TRAINING_CONTROL,
        "LAKE_MAINTENANCE_REQUESTED": LAKE_MAINTENANCE_REQUESTED,
        "BATCH_STUDY_REQUESTED": BATCH_STUDY_REQUESTED,
    }
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            args = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            kinds = [a for a in args if a in EVENT_KINDS]
            if name in ("type", "event_type") and kinds:
                types |= {d.type(kinds[-1]) for d in DOMAINS.values()}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and parse_event_type(node.value):
            types.add(node.value)
        elif isinstance(node, ast.Name) and node.id in constants:
            types.add(constants[node.id])
    return frozenset(types)


def test_every_trigger_type_is_a_declared_event_type() -> None:
    for doc in _by_kind("Trigger"):
        for ce_type in trigger_types(doc):
            if ce_type in (
                KAFKA_EVENT,
                PING_TYPE,
                CHECKPOINT_REQUESTED,
                TRAINING_CONTROL,
                LAKE_MAINTENANCE_REQUESTED,
                BATCH_STUDY_REQUESTED,
            ):
                continue
            parsed = parse_event_type(ce_type)
            assert parsed, f"{doc['metadata']['name']}: {ce_type} is outside com.coelho.realtime.<domain>.<kind>"
            domain, kind = parsed
            assert domain in DOMAINS and kind in EVENT_KINDS, ce_type
            if kind == "label":
                assert DOMAINS[domain].target is not None, f"{ce_type}: {domain} has no target to label"


@pytest.mark.parametrize("doc", _by_kind("Trigger"), ids=lambda d: d["metadata"]["name"])
def test_every_type_a_trigger_waits_for_is_emitted(doc: dict[str, Any]) -> None:
    subscriber = doc["spec"]["subscriber"]["ref"]["name"]
    emitted = set(_produced_types() | _code_emitted_types(_function_files(subscriber)))
    if _by_kind("KafkaSource"):
        emitted.add(KAFKA_EVENT)
    if _by_kind("PingSource"):
        emitted.add(PING_TYPE)
    waited = trigger_types(doc)
    assert waited, f"Trigger {doc['metadata']['name']} does not filter on type"
    missing = sorted(waited - emitted)
    assert not missing, f"no producer, function or source emits {missing}"


# --- environment ------------------------------------------------------------------------------------------
@cache
def _module_imports(path: Path) -> frozenset[Path]:
    tree = ast.parse(path.read_text())
    found: set[Path] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name.startswith("functions."):
                candidate = ROOT / (name.replace(".", "/") + ".py")
                if candidate.exists():
                    found.add(candidate)
    return frozenset(found)


def _reachable(path: Path) -> set[Path]:
    seen, todo = set(), [path]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(_module_imports(current) - seen)
    return seen


@cache
def _env_reads(path: Path) -> frozenset[str]:
    """Names read with os.environ.get/[...], os.getenv, or `<something env>.get("NAME")`; f-strings like
    f"COELHO_MODEL_{domain...}" expand to every domain."""
    reads: set[str] = set()
    tree = ast.parse(path.read_text())

    def literal(node: ast.AST) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isupper():
            return {node.value}
        if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            prefix = str(node.values[0].value)
            return {prefix + d.upper() for d in DOMAINS} if prefix.isupper() else set()
        return set()

    # A bare `environ` is the process environment only after `from os import environ` (else it is a WSGI environ).
    os_environ_imported = any(
        isinstance(n, ast.ImportFrom) and n.module == "os" and any(a.name == "environ" for a in n.names)
        for n in ast.walk(tree)
    )

    def is_env(node: ast.AST) -> bool:
        text = ast.unparse(node)
        if text == "environ":
            return os_environ_imported
        return text == "os.environ" or text.split(".")[-1].lower() in ("env", "environment")

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and func.attr == "get"
                and is_env(func.value)
                or ast.unparse(func) in ("os.getenv", "getenv")
            ):
                reads |= literal(node.args[0])
        elif isinstance(node, ast.Subscript) and is_env(node.value):
            reads |= literal(node.slice)
    return frozenset(reads)


def _service_env(manifests: Manifests, service: dict[str, Any]) -> set[str]:
    container = service["spec"]["template"]["spec"]["containers"][0]
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            names |= set(manifests.config_maps[("coelho", source["configMapRef"]["name"])])
        if "secretRef" in source:
            secret = next(d for d in _by_kind("Secret") if d["metadata"]["name"] == source["secretRef"]["name"])
            names |= set(secret.get("stringData", {})) | set(secret.get("data", {}))
    return names


def test_function_env_reader_finds_what_the_code_reads() -> None:
    # Guards the AST reader itself: these reads are in the functions today.
    reads = set().union(*(_env_reads(p) for p in FUNCTIONS.glob("*.py")))
    assert {"REDIS_URL", "BROKER_URL", "MLFLOW_TRACKING_URI"} <= reads


FUNCTION_SERVICES = [
    *(f"coelho-learn-{d}" for d in DOMAINS),
    "coelho-predict",
    *(f"coelho-predict-{d}" for d in DOMAINS),
    "coelho-checkpoint",
    "coelho-chat",
    "coelho-sql",
    "coelho-lake",
]


def test_every_knative_service_runs_an_existing_function(manifests: Manifests) -> None:
    # A Service whose function module is missing would deploy a pod that crashes; the list below is the same set.
    names = sorted(name for ns, name in manifests.services if name.startswith("coelho-") and name != "coelho-dashboard")
    assert names == sorted(FUNCTION_SERVICES)
    for name in names:
        assert _function_module(name).exists(), f"{name} has no {_function_module(name).relative_to(ROOT)}"


@pytest.mark.parametrize("service_name", FUNCTION_SERVICES)
def test_every_env_var_a_function_reads_is_set_by_its_service(manifests: Manifests, service_name: str) -> None:
    module = _function_module(service_name)
    service = manifests.services[("coelho", service_name)]
    provided = _service_env(manifests, service) | KNATIVE_PROVIDED_ENV
    reads = set().union(*(_env_reads(p) for p in _reachable(module)))
    assert reads, f"found no environment reads in {module}"
    missing = sorted(reads - provided)
    assert not missing, f"{service_name} reads {missing} but its Service does not set them"


def test_function_env_names_of_settings_are_set_by_every_function_service(manifests: Manifests) -> None:
    """What the embedded platform gives every function process (Settings.function_env), each Service sets too:
    from the ConfigMap, or its own credentials (REDIS_URL per Redis user, AWS_* for the S3 users)."""
    from coelho.settings import Settings

    credentials = {"REDIS_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    config = set(manifests.config_maps[("coelho", "coelho-config")])
    assert set(Settings().function_env()) - credentials <= config
    assert not credentials & config, "credentials in the ConfigMap"


def test_func_yaml_names_an_existing_service_and_claims_no_build(manifests: Manifests) -> None:
    """A plain `kn func invoke` posts to the Knative Service named in func.yaml: it exists, and the file claims no
    build or deploy settings (the image comes from knative/Dockerfile)."""
    from tests.knative.knative_schemas import StringTimestampLoader

    func = yaml.load((ROOT / "func.yaml").read_text(), Loader=StringTimestampLoader)  # noqa: S506 - a SafeLoader
    assert (func["namespace"], func["name"]) in manifests.services
    assert func["invoke"] == "cloudevent"
    assert not {"build", "run", "deploy", "image", "registry"} & set(func), "func.yaml claims to build or deploy"
