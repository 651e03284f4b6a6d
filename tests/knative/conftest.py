"""Fixtures of the manifest tests (helpers live in knative_schemas.py, importable from this folder)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from knative_schemas import documents, schema_path, strict_schema  # noqa: E402


@pytest.fixture(scope="session")
def knative_documents() -> list[tuple[Path, dict[str, Any]]]:
    return list(documents())


@pytest.fixture(scope="session")
def schema_for() -> Any:
    """doc -> the strict schema of its kind (additionalProperties: false added)."""
    return lambda doc: strict_schema(schema_path(doc).name, str(doc["kind"]))
