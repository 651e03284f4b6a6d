"""What the observability tests share: the metric names the code exports, the metric names a query reads, and
Prometheus's URL (skip only when it is not installed).

Exported names come from the source: every prometheus_client Counter/Gauge/Histogram/Summary/Info/Enum built with
a literal name in the platform's packages, expanded to the sample names Prometheus stores (a counter `x_total`
is stored as `x_total` and `x_created`, a histogram `x` as `x_bucket`, `x_sum`, `x_count`, ...). Scanning the
source, rather than importing modules and reading the default registry, also finds metrics kept in a registry of
their own (the router's) or created inside functions.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from coelho.engines import BinaryMissing, prometheus_bin
from tests.functions.function_testkit import throwaway_redis

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("coelho", "eventing", "functions", "producers", "ui")
METRIC_CLASSES = {"Counter", "Gauge", "Histogram", "Summary", "Info", "Enum"}
# Custom collectors (metrics computed at scrape time) build metric families instead.
FAMILY_CLASSES = {f"{kind}MetricFamily": kind for kind in ("Counter", "Gauge", "Histogram", "Summary", "Info")}


@dataclass(frozen=True)
class ExportedMetric:
    name: str  # as written in the code
    kind: str  # Counter, Gauge, ...
    labels: tuple[str, ...]
    where: str  # path:line

    @property
    def samples(self) -> set[str]:
        """The sample (series) names Prometheus stores for this metric."""
        if self.kind == "Counter":
            base = self.name.removesuffix("_total")
            return {f"{base}_total", f"{base}_created"}
        if self.kind == "Histogram":
            return {f"{self.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        if self.kind == "Summary":
            return {self.name, *(f"{self.name}_{s}" for s in ("sum", "count", "created"))}
        if self.kind == "Info":
            return {f"{self.name}_info"}
        return {self.name}


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _labels(call: ast.Call) -> tuple[str, ...]:
    node: ast.AST | None = call.args[2] if len(call.args) > 2 else None
    for kw in call.keywords:
        if kw.arg in ("labelnames", "labels"):
            node = kw.value
    if isinstance(node, ast.List | ast.Tuple):
        return tuple(v for v in (_literal(e) for e in node.elts) if v is not None)
    return ()


def exported_metrics(root: Path = ROOT) -> list[ExportedMetric]:
    found: list[ExportedMetric] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                cls = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                cls = FAMILY_CLASSES.get(cls, cls)
                if cls not in METRIC_CLASSES:
                    continue
                name = _literal(node.args[0]) if node.args else None
                for kw in node.keywords:
                    if kw.arg == "name":
                        name = _literal(kw.value)
                namespace = next((_literal(kw.value) for kw in node.keywords if kw.arg == "namespace"), None)
                if name is None or not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name):
                    continue  # not a prometheus_client metric (or a name we cannot read)
                if namespace:
                    name = f"{namespace}_{name}"
                found.append(ExportedMetric(name, cls, _labels(node), f"{path.relative_to(root)}:{node.lineno}"))
    return found


def exported_sample_names(root: Path = ROOT) -> set[str]:
    return {sample for metric in exported_metrics(root) for sample in metric.samples}


# --- PromQL: which metric names does an expression read? --------------------------------------------------
PROMQL_WORDS = {
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (function names, aggregations, labels and durations left out).

    >>> sorted(promql_metric_names('sum by (job) (rate(a_total{code=~"5.."}[5m])) / on(job) b unless c_bucket > 1'))
    ['a_total', 'b', 'c_bucket']
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # strings (label values)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", text):
        word, is_call = match.group(1), match.group(2)
        if is_call or word.lower() in PROMQL_WORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


# --- a private Redis for tests that need one but not the whole platform -----------------------------------------
@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    with throwaway_redis(tmp_path) as url:
        yield url


def prometheus_url(platform: Any) -> str:
    """Prometheus's URL: skip when its binary is not installed, fail when it is installed but not running."""
    try:
        prometheus_bin()
    except BinaryMissing:
        pytest.skip("prometheus is not installed")
    assert platform.running("prometheus"), (
        f"prometheus is installed but not running: see {platform.log_path('prometheus')}"
    )
    return str(platform.settings.url("prometheus"))
