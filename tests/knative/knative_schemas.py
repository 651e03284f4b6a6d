"""Helpers of the manifest tests: the documents in knative/ and the official schemas, made strict."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KNATIVE = ROOT / "knative"
# The official Knative schemas and the func.yaml schema, vendored unchanged (schemas/SOURCES.md: origin, Apache-2.0)
# so the tests run on any checkout, offline.
SCHEMAS = Path(__file__).resolve().parent / "schemas"
# Parts Knative leaves open by design: a Trigger's spec (filters), a Broker's spec.delivery.
OPEN_BY_DESIGN = {("Trigger", ("properties", "spec")), ("Broker", ("properties", "spec", "properties", "delivery"))}


class StringTimestampLoader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings (func.yaml's `created`)."""


StringTimestampLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def manifest_files() -> list[Path]:
    """Kubernetes manifests under knative/ (Helm values in helm/ and kustomizations excluded)."""
    return sorted(
        p
        for p in KNATIVE.rglob("*.yaml")
        if "helm" not in p.relative_to(KNATIVE).parts and p.name != "kustomization.yaml"
    )


def documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and "kind" in doc:
                yield path, doc


def is_knative(doc: dict[str, Any]) -> bool:
    return str(doc.get("apiVersion", "")).split("/")[0].endswith("knative.dev")


def schema_path(doc: dict[str, Any]) -> Path:
    group, version = str(doc["apiVersion"]).split("/")
    return SCHEMAS / f"{group}_{version}_{doc['kind']}.json"


def strictify(schema: dict[str, Any], kind: str, at: tuple[str, ...] = ()) -> dict[str, Any]:
    """additionalProperties: false on every object schema that lists properties and does not preserve unknowns."""
    out = copy.copy(schema)
    if (
        "properties" in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
        and "additionalProperties" not in out
        and (kind, at) not in OPEN_BY_DESIGN
    ):
        out["additionalProperties"] = False
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: strictify(sub, kind, (*at, "properties", name)) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = strictify(value, kind, (*at, key))
        elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
            out[key] = [strictify(v, kind, (*at, key)) for v in value]
    return out


@cache
def strict_schema(name: str, kind: str) -> dict[str, Any]:
    schema = json.loads((SCHEMAS / name).read_text())
    # Some CRD schemas list only spec/status at the root; every object has apiVersion, kind and metadata.
    schema["properties"] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        **schema.get("properties", {}),
    }
    return strictify(schema, kind)


# --- the rendered tree (`kubectl kustomize knative/`) -------------------------------------------------------
KUBECTL = shutil.which("kubectl")
NO_KUBECTL = "kubectl is not installed (./dev installs Debian's kubernetes-client): cannot render knative/"


def render(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIR`, parsed: every object `kubectl apply -k DIR` would send to the cluster."""
    assert KUBECTL, NO_KUBECTL
    out = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RenderError(out.stderr.strip())
    return [doc for doc in yaml.safe_load_all(out.stdout) if isinstance(doc, dict)]


class RenderError(RuntimeError):
    """kustomize refused to render the tree."""


def copy_with_secrets(target: Path) -> Path:
    """knative/ copied to `target`, with each secrets/*.env made from its example by secrets/generate.sh (the
    documented step): what an operator renders."""
    tree = target / "knative"
    shutil.copytree(KNATIVE, tree, ignore=shutil.ignore_patterns("*.env"))
    subprocess.run(["sh", str(tree / "secrets" / "generate.sh")], check=True, capture_output=True, timeout=60)
    return tree


@cache
def rendered() -> tuple[dict[str, Any], ...]:
    """The whole tree rendered once per session, with generated credentials."""
    with tempfile.TemporaryDirectory() as tmp:
        return tuple(render(copy_with_secrets(Path(tmp))))
