"""The assistant's documentation search: the read-only `search_docs` tool finds the passage of README.md, docs/ or
an ADR that answers a how-to or why question, and the answer cites the file (on the Anthropic stand-in)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from functions.assistant.docs_search import DocsIndex, search_docs
from functions.assistant.redaction import SecretRedactor
from functions.assistant.tools import TOOLS, ToolBox
from functions.chat import ChatConfig, create_chat_app
from tests.chat.anthropic_standin import AnthropicStandIn, text, tool_use
from tests.functions.conftest import redis_server, redis_url  # noqa: F401  (fixtures: a private redis-server)


@pytest.mark.parametrize(
    ("question", "expected_file", "expected_words"),
    [
        ("how do I pause training?", None, ("training pause",)),
        ("why is predict-one fast?", "docs/adr/0072-predict-one-latency.md", ("predict",)),
    ],
)
def test_the_docs_answer_how_and_why(question: str, expected_file: str | None, expected_words: tuple[str, ...]) -> None:
    result = search_docs(question)
    files = [hit["file"] for hit in result["results"]]
    if expected_file:
        assert files[0] == expected_file
    text_found = " ".join(hit["excerpt"] for hit in result["results"])
    assert all(word in text_found for word in expected_words), result


def test_nothing_found_is_said_and_the_index_is_the_projects() -> None:
    assert search_docs("zzqx-nonexistent-term")["results"] == []
    files = {p.file for p in DocsIndex.from_project().items}
    assert {"README.md", "docs/assistant.md", "docs/adr/0072-predict-one-latency.md"} <= files


def test_the_tool_is_registered_read_only_and_validated() -> None:
    assert "search_docs" in TOOLS

    class NoReads:  # the docs tool reads nothing of the platform
        def __getattr__(self, name: str) -> Any:
            return lambda **kwargs: {"error": "not used"}

    box = ToolBox(reader=NoReads(), page_context={}, redactor=SecretRedactor())
    result, is_error = box.run("search_docs", {"query": "pause training", "limit": 2})
    assert not is_error and len(json.loads(result)["results"]) == 2
    _, is_error = box.run("search_docs", {"query": "x" * 301})
    assert is_error
    _, is_error = box.run("search_docs", {"query": "pause", "path": "/etc/passwd"})
    assert is_error


@pytest.fixture()
def api() -> Iterator[AnthropicStandIn]:
    with AnthropicStandIn() as server:
        yield server


def test_the_assistant_answers_from_the_docs_and_cites_them(api: AnthropicStandIn, redis_url: str) -> None:  # noqa: F811
    def answer_citing(body: dict[str, Any]) -> list[dict[str, Any]]:
        results = json.loads(body["messages"][-1]["content"][0]["content"])["results"]
        top = results[0]
        return [text(f"Pause it with `coelho training pause`, see {top['file']} ({top['section']}).")]

    api.script([tool_use("search_docs", {"query": "pause training"}, "d1")], answer_citing)
    client = create_chat_app(ChatConfig(api_key="test", base_url=api.url, api_max_retries=0)).test_client()
    response = client.post(
        "/chat", json={"session_id": "web-" + uuid.uuid4().hex, "message": "How do I pause training?", "page": {}}
    )
    events = [json.loads(line) for line in response.get_data(as_text=True).splitlines() if line.strip()]
    done = next(e for e in events if e["type"] == "done")
    assert done["tools"] == ["search_docs"]
    sent = json.dumps(api.requests[-1].tool_results())
    assert "training pause" in sent
    assert ".md" in done["answer"] and "coelho training pause" in done["answer"]
