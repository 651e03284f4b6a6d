"""Every relative link in README.md and docs/**/*.md points at a file of the repository.

A pure check of the text: links to web pages (http, https) and mail addresses are not followed, a `#fragment` is
cut off before the check (anchors are not checked), and code (fenced blocks, `inline code`) is not a link.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(?:<([^>\n]*)>|([^)\s]*))(?:\s+[\"'(][^)]*)?\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
EXTERNAL = re.compile(r"^(https?:|mailto:)", re.I)
# Repository paths of documents named without a link ("Details: docs/adr/0071-....md"); NNNN is a template's number.
NAMED_DOC = re.compile(r"(?<![\w/.-])(docs/[\w./-]+\.md)\b")
TEMPLATE = "NNNN"


def prose(text: str) -> str:
    """The text without fenced code blocks and code spans (a path there is an example, not a link)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def links(text: str) -> list[str]:
    """Targets of the inline links, images and reference definitions in a markdown text, in order."""
    body = prose(text)
    inline = [m.group(1) if m.group(1) is not None else m.group(2) for m in INLINE_LINK.finditer(body)]
    return inline + [m.group(1) for m in REFERENCE.finditer(body)]


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in links(path.read_text(encoding="utf-8")):
        if not target or EXTERNAL.match(target):
            continue
        file_part = target.split("#", 1)[0].split("?", 1)[0]
        if not file_part:  # "#section": a place in this same file
            continue
        resolved = (ROOT / file_part.lstrip("/")) if file_part.startswith("/") else (path.parent / file_part)
        if not resolved.exists():
            broken.append(target)
    return broken


def test_the_scanner_finds_links_and_leaves_code_alone() -> None:
    text = (
        'See [the runtime](docs/runtime.md#ports), ![a chart](img/c.png "title") and [ADR](<adr/0001 x.md>).\n'
        "[web](https://example.org/a) [mail](mailto:a@b.c) [here](#top)\n"
        "[ref]: ../README.md\n"
        "`[not](a-link.md)`\n"
        "```\n[nor](this.md)\n```\n"
    )
    assert links(text) == [
        "docs/runtime.md#ports",
        "img/c.png",
        "adr/0001 x.md",
        "https://example.org/a",
        "mailto:a@b.c",
        "#top",
        "../README.md",
    ]


def test_there_are_documents_to_check() -> None:
    assert ROOT / "README.md" in MARKDOWN and len(MARKDOWN) > 5


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    assert broken_links(path) == [], f"{path.relative_to(ROOT)}: links to files that do not exist"


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_document_named_in_the_prose_exists(path: Path) -> None:
    named = {p for p in NAMED_DOC.findall(path.read_text(encoding="utf-8")) if TEMPLATE not in p}
    assert sorted(p for p in named if not (ROOT / p).exists()) == [], (
        f"{path.relative_to(ROOT)} names missing documents"
    )
