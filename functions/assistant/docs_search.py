"""The assistant's documentation search: the project's own README.md, docs/ and its ADRs, as a BM25 keyword index
built once in memory (no network, no model), searched by the read-only tool `search_docs`.

Each Markdown file is cut into its sections (a heading and the text under it, long sections into windows of
WINDOW_WORDS); a result names the file and the section and quotes the passage, so an answer can cite it
("docs/runtime.md, Pausing training"). The index is small (a few thousand passages) and takes well under a second
to build; it is built on the first search.

    >>> index = DocsIndex.from_texts({"docs/a.md": "# Pausing\\nRun `coelho training pause tfd` to pause training.",
    ...                                "docs/b.md": "# Latency\\npredict-one keeps models in memory."})
    >>> [hit["file"] for hit in index.search("how do I pause training?")]
    ['docs/a.md']
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[2]
SOURCES = ("README.md", "SECURITY.md", "docs/**/*.md")
WINDOW_WORDS = 220  # a long section is searched (and quoted) in windows of this many words
EXCERPT_CHARS = 900
_WORD = re.compile(r"[a-z0-9][a-z0-9_\-]*")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
# Words too common to tell passages apart
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "the",
        "this",
        "to",
        "what",
        "when",
        "where",
        "which",
        "why",
        "with",
        "you",
        "your",
    ]
)
K1, B = 1.4, 0.75


def stem(word: str) -> str:
    """A crude stem, enough for keywords: "pausing", "paused", "pauses" and "pause" are one term.

    >>> [stem(w) for w in ("pausing", "paused", "pauses", "pause", "training", "models", "class")]
    ['paus', 'paus', 'paus', 'paus', 'train', 'model', 'class']
    """
    if "-" in word or "_" in word:  # names (predict-one, learn_one) stay whole
        return word
    for suffix, shortest in (("ing", 6), ("ed", 5), ("es", 5), ("s", 4)):
        if word.endswith(suffix) and len(word) >= shortest and not word.endswith("ss"):
            word = word[: -len(suffix)]
            break
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    return word


def words(text: str) -> list[str]:
    """Lower-case terms, stop words out, stemmed.

    >>> words("Why is predict-one fast? Models stay in memory")
    ['predict-one', 'fast', 'model', 'stay', 'memory']
    """
    return [stem(word) for word in _WORD.findall(text.lower()) if word not in _STOP]


@dataclass(frozen=True)
class Passage:
    file: str
    section: str
    text: str


def passages(file: str, markdown: str) -> list[Passage]:
    """A Markdown file's sections (heading path, text), long ones as windows."""
    out: list[Passage] = []
    path: list[str] = []
    lines: list[str] = []

    def flush() -> None:
        body = "\n".join(lines).strip()
        lines.clear()
        if not body:
            return
        section = " > ".join(path) or file
        tokens = body.split()
        for start in range(0, len(tokens), WINDOW_WORDS):
            out.append(Passage(file, section, " ".join(tokens[start : start + WINDOW_WORDS])))

    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        heading = None if in_code else _HEADING.match(line)
        if heading:
            flush()
            level = len(heading.group(1))
            path[:] = [*path[: level - 1], heading.group(2).strip()]
            lines.append(heading.group(2))  # the heading's words count for its section
        else:
            lines.append(line)
    flush()
    return out


class DocsIndex:
    """BM25 over passages."""

    def __init__(self, items: list[Passage]) -> None:
        self.items = items
        self.terms = [Counter(words(p.section + " " + p.text)) for p in items]
        self.lengths = [sum(t.values()) for t in self.terms]
        self.average = sum(self.lengths) / len(self.lengths) if self.lengths else 1.0
        frequency: Counter[str] = Counter()
        for terms in self.terms:
            frequency.update(terms.keys())
        n = len(items)
        self.idf = {term: math.log(1 + (n - f + 0.5) / (f + 0.5)) for term, f in frequency.items()}

    @classmethod
    def from_texts(cls, texts: Mapping[str, str]) -> DocsIndex:
        return cls([p for file, text in texts.items() for p in passages(file, text)])

    @classmethod
    def from_project(cls, root: Path = PROJECT) -> DocsIndex:
        texts: dict[str, str] = {}
        for pattern in SOURCES:
            for path in sorted(root.glob(pattern)):
                if path.is_file():
                    texts[path.relative_to(root).as_posix()] = path.read_text(encoding="utf-8", errors="replace")
        return cls.from_texts(texts)

    def search(self, query: str, limit: int = 4) -> list[dict[str, Any]]:
        """The best passages for `query`, best first: file, section, score and the passage (cut)."""
        wanted = set(words(query))
        scored = []
        for index, terms in enumerate(self.terms):
            score = 0.0
            norm = K1 * (1 - B + B * self.lengths[index] / self.average)
            for term in wanted:
                tf = terms.get(term)
                if tf:
                    score += self.idf[term] * tf * (K1 + 1) / (tf + norm)
            if score > 0:
                scored.append((score, index))
        scored.sort(reverse=True)
        out: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        for score, index in scored:
            item = self.items[index]
            if (item.file, item.section) in seen:  # the best window of a section only
                continue
            seen.add((item.file, item.section))
            if len(out) == limit:
                break
            excerpt = item.text if len(item.text) <= EXCERPT_CHARS else item.text[: EXCERPT_CHARS - 3] + "..."
            out.append({"file": item.file, "section": item.section, "score": round(score, 2), "excerpt": excerpt})
        return out


_index: DocsIndex | None = None
_lock = threading.Lock()


def search_docs(query: str, limit: int = 4) -> dict[str, Any]:
    """The tool: passages of the project's documentation that answer `query`, each with the file to cite."""
    global _index
    with _lock:
        if _index is None:
            _index = DocsIndex.from_project()
    if not _index.items:
        return {"error": "the documentation is not part of this deployment"}
    hits = _index.search(query, limit)
    if not hits:
        return {"query": query, "results": [], "note": "nothing in the documentation matches: say so"}
    return {"query": query, "results": hits, "cite": "name the file (and section) each statement comes from"}
