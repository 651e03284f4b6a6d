"""Trigger filters with Knative's semantics: `filter.attributes` and the `filters` (Subscriptions API) dialect.

- `filter.attributes`: every listed attribute must equal the value; an empty value matches anything.
- `filters`: a list that must all match; each entry is one of exact, prefix, suffix (maps of attribute -> value,
  every pair must hold, a missing attribute never matches), all, any (lists of filters), not (one filter).
  When `filters` is set, `filter` is ignored, as in Knative.

>>> match = compile_filter({"type": "a.b"}, [{"prefix": {"type": "a."}}, {"not": {"exact": {"domain": "eta"}}}])
>>> match({"type": "a.b", "domain": "tfd"}), match({"type": "a.b", "domain": "eta"})
(True, False)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from eventing.router.manifests import ManifestError

Attributes = Mapping[str, str]
Predicate = Callable[[Attributes], bool]


def _pairs(raw: Any, dialect: str) -> list[tuple[str, str]]:
    if not isinstance(raw, Mapping) or not raw:
        raise ManifestError(f"filter {dialect!r} needs a non-empty map of attribute: value")
    return [(str(k), str(v)) for k, v in raw.items()]


def compile_dialect(spec: Mapping[str, Any]) -> Predicate:
    """One entry of the `filters` list as a predicate over the event's attributes."""
    keys = [k for k in spec if spec[k] is not None]
    if len(keys) != 1:
        raise ManifestError(f"a filter must have exactly one of exact/prefix/suffix/all/any/not, got {keys}")
    dialect = keys[0]
    raw = spec[dialect]
    if dialect == "exact":
        exact = _pairs(raw, dialect)
        return lambda attrs: all(attrs.get(k) == v for k, v in exact)
    if dialect == "prefix":
        prefix = _pairs(raw, dialect)
        return lambda attrs: all((a := attrs.get(k)) is not None and a.startswith(v) for k, v in prefix)
    if dialect == "suffix":
        suffix = _pairs(raw, dialect)
        return lambda attrs: all((a := attrs.get(k)) is not None and a.endswith(v) for k, v in suffix)
    if dialect in ("all", "any"):
        if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
            raise ManifestError(f"filter {dialect!r} needs a list of filters")
        subs = [compile_dialect(s) for s in raw]
        if dialect == "all":
            return lambda attrs: all(p(attrs) for p in subs)
        return lambda attrs: any(p(attrs) for p in subs)
    if dialect == "not":
        inner = compile_dialect(raw)
        return lambda attrs: not inner(attrs)
    if dialect == "cesql":
        raise ManifestError("the CESQL filter dialect is not supported by the local router")
    raise ManifestError(f"unknown filter dialect {dialect!r}")


def compile_filter(attributes: Mapping[str, str] | None, filters: Sequence[Mapping[str, Any]] | None) -> Predicate:
    """The predicate of a Trigger: its `filters` when set, else its `filter.attributes`."""
    if filters:
        preds = [compile_dialect(f) for f in filters]
        return lambda attrs: all(p(attrs) for p in preds)
    wanted = [(k, v) for k, v in (attributes or {}).items() if v != ""]
    return lambda attrs: all(attrs.get(k) == v for k, v in wanted)
