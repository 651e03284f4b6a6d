"""Every manifest in knative/ validates: Knative kinds against the official CRD schemas (made strict, so a
misspelled field fails), built-in kinds with kubernetes-validate, func.yaml against the func schema."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.knative.knative_schemas import (
    KNATIVE,
    ROOT,
    SCHEMAS,
    StringTimestampLoader,
    is_knative,
    manifest_files,
    schema_path,
)

KUBERNETES_VERSION = "1.30.0"
# Kinds from operators the deploy guide installs (Strimzi, kube-prometheus-stack): no schema here, checked by name.
OPERATOR_KINDS = {
    "kafka.strimzi.io": {"Kafka", "KafkaNodePool", "KafkaTopic"},
    "monitoring.coreos.com": {"PodMonitor", "ServiceMonitor", "PrometheusRule"},
}


def _docs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in manifest_files():
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(doc, dict) and "kind" in doc:
                out.append((f"{path.relative_to(KNATIVE)}#{i}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return out


DOCS = _docs()
KNATIVE_DOCS = [(name, doc) for name, doc in DOCS if is_knative(doc)]
BUILTIN_DOCS = [
    (name, doc)
    for name, doc in DOCS
    if not is_knative(doc)
    and "." not in str(doc["apiVersion"]).split("/")[0]
    or str(doc["apiVersion"]).startswith(("apps/", "batch/"))
]


def validator(doc: dict[str, Any], schema_for: Any) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema_for(doc))


@pytest.mark.parametrize("name,doc", KNATIVE_DOCS, ids=[n for n, _ in KNATIVE_DOCS])
def test_knative_manifest_matches_official_schema(name: str, doc: dict[str, Any], schema_for: Any) -> None:
    assert schema_path(doc).exists(), f"no official schema for {doc['apiVersion']} {doc['kind']}"
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator(doc, schema_for).iter_errors(doc)]
    assert not errors, errors


def _misspell(doc: dict[str, Any], path: list[str | int], wrong: str) -> dict[str, Any]:
    bad = copy.deepcopy(doc)
    node: Any = bad
    for step in path[:-1]:
        node = node[step]
    node[wrong] = node.pop(path[-1])
    return bad


def _first(kind: str) -> dict[str, Any]:
    return next(doc for _, doc in KNATIVE_DOCS if doc["kind"] == kind)


TYPOS = [
    ("Service", ["spec", "template", "spec", "containers", 0, "readinessProbe"], "readinesProbe"),
    ("Service", ["spec", "template", "spec", "containerConcurrency"], "containerConcurency"),
    ("Broker", ["spec", "config"], "confg"),
    ("KafkaSource", ["spec", "consumerGroup"], "consumergroup"),
    ("KafkaSource", ["spec", "sink", "ref"], "reff"),
    ("PingSource", ["spec", "schedule"], "schedul"),
    ("KafkaSink", ["spec", "topic"], "topics"),
    ("Trigger", ["spec", "subscriber", "ref"], "rref"),
]


@pytest.mark.parametrize("kind,path,wrong", TYPOS, ids=[f"{k}:{w}" for k, _, w in TYPOS])
def test_strict_schema_rejects_a_misspelled_field(
    kind: str, path: list[str | int], wrong: str, schema_for: Any
) -> None:
    doc = _first(kind)
    assert validator(doc, schema_for).is_valid(doc)
    bad = _misspell(doc, path, wrong)
    errors = list(validator(bad, schema_for).iter_errors(bad))
    assert any(wrong in e.message and "Additional properties" in e.message for e in errors), [e.message for e in errors]


def test_schemas_as_shipped_accept_typos_which_is_why_they_are_made_strict(schema_for: Any) -> None:
    doc = _first("KafkaSource")
    bad = _misspell(doc, ["spec", "consumerGroup"], "consumergroup")
    loose = json.loads(schema_path(doc).read_text())
    assert jsonschema.Draft202012Validator(loose).is_valid(bad)
    assert not validator(bad, schema_for).is_valid(bad)


@pytest.mark.parametrize("name,doc", BUILTIN_DOCS, ids=[n for n, _ in BUILTIN_DOCS])
def test_builtin_manifest_validates_with_kubernetes_validate(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kubernetes_validate_rejects_a_misspelled_builtin_field() -> None:
    deployment = next(doc for _, doc in BUILTIN_DOCS if doc["kind"] == "Deployment")
    bad = _misspell(deployment, ["spec", "replicas"], "replica")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_every_document_is_a_known_kind() -> None:
    for name, doc in DOCS:
        group = str(doc["apiVersion"]).split("/")[0] if "/" in str(doc["apiVersion"]) else ""
        if is_knative(doc) or (name, doc) in BUILTIN_DOCS:
            continue
        assert doc["kind"] in OPERATOR_KINDS.get(group, set()), (
            f"{name}: {doc['apiVersion']} {doc['kind']} is unchecked"
        )


def test_func_yaml_matches_the_func_schema() -> None:
    schema = json.loads((SCHEMAS / "func_yaml-schema.json").read_text())
    func = yaml.load((ROOT / "func.yaml").read_text(), Loader=StringTimestampLoader)  # noqa: S506 - a SafeLoader
    assert isinstance(func["created"], str)
    jsonschema.Draft4Validator(schema).validate(func)
    assert func["runtime"] == "python"
    bad = {**func, "runtme": "python"}
    assert not jsonschema.Draft4Validator(schema).is_valid(bad)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KNATIVE / "kustomization.yaml").read_text())
    listed = {str(r) for r in kustomization["resources"]}
    for path in manifest_files():
        rel = path.relative_to(KNATIVE)
        if rel.parts[0] == "monitoring":
            assert "monitoring" in listed  # the observability folder has its own kustomization
            continue
        assert str(rel) in listed, f"{rel} is not in knative/kustomization.yaml"
    for resource in listed:
        assert (KNATIVE / resource).exists(), resource
    if (KNATIVE / "monitoring").is_dir():
        assert (KNATIVE / "monitoring" / "kustomization.yaml").exists()


def test_helm_values_are_yaml() -> None:
    for path in (KNATIVE / "helm").glob("*.yaml"):
        assert isinstance(yaml.safe_load(path.read_text()), dict), path


def test_every_vendored_schema_says_where_it_comes_from() -> None:
    """Each schema file has its row in schemas/SOURCES.md (repository, path, commit, license), and each row a file."""
    vendored = {p.name for p in Path(SCHEMAS).glob("*.json")}
    assert vendored
    sources = (Path(SCHEMAS) / "SOURCES.md").read_text()
    listed = set(re.findall(r"^\| ([\w.-]+\.json) \|", sources, flags=re.M))
    assert listed == vendored, {
        "not in SOURCES.md": sorted(vendored - listed),
        "no such file": sorted(listed - vendored),
    }
    for row in re.findall(r"^\| [\w.-]+\.json \|.*$", sources, flags=re.M):
        assert re.search(r"\| `[0-9a-f]{40}` \| Apache-2\.0 \|", row), row
