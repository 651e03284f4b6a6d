"""docs/events.md is generated from the code: it must match, and name every domain's types and sources."""

from __future__ import annotations

from pathlib import Path

from eventing import catalog
from eventing.cloudevent_types import EVENT_KINDS
from eventing.domains import DOMAINS

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def test_docs_events_md_matches_the_code() -> None:
    assert DOC.read_text() == catalog.render(), (
        "docs/events.md is stale: run `python -m eventing.catalog > docs/events.md`"
    )


def test_the_table_has_every_type_and_source_of_every_domain() -> None:
    text = DOC.read_text()
    for d in DOMAINS.values():
        assert f"`{d.topic}`" in text
        for kind in EVENT_KINDS:
            if kind == "label" and d.target is None:
                assert f"`{d.type(kind)}`" not in text
                continue
            assert f"| {kind} | `{d.type(kind)}` | `{d.source(catalog.EMITTERS[kind])}` |" in text
        for path, _field in d.leaf_fields():
            assert f"| `{path}` |" in text
