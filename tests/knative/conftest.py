"""Fixtures of the manifest tests (helpers live in knative_schemas.py, imported as tests.knative.knative_schemas)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.knative.knative_schemas import documents, schema_path, strict_schema


@pytest.fixture(scope="session")
def knative_documents() -> list[tuple[Path, dict[str, Any]]]:
    return list(documents())


@pytest.fixture(scope="session")
def schema_for() -> Any:
    """doc -> the strict schema of its kind (additionalProperties: false added)."""
    return lambda doc: strict_schema(schema_path(doc).name, str(doc["kind"]))
