"""Reading a Prometheus text exposition (a /metrics page) in tests, through prometheus_client's parser, never
by matching lines: label order, escaping and the `_total`/`_created` samples are the parser's business.

>>> text = '# TYPE c_total counter\\nc_total{trigger="a"} 2.0\\nc_total{trigger="b"} 3.0\\n'
>>> sample_value(text, "c_total", trigger="a"), sample_value(text, "c_total", trigger="z")
(2.0, None)
>>> sorted(samples(text, "c_total").values())
[2.0, 3.0]
>>> sorted(sample_names(text)), sorted(family_names(text))
(['c_total'], ['c'])
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]


def samples(text: str, name: str) -> dict[Labels, float]:
    """Every sample called `name` (as exposed: `x_total`, `x_bucket`, ...), keyed by its labels."""
    return {
        frozenset(sample.labels.items()): float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def sample_value(text: str, name: str, **labels: str) -> float | None:
    """The value of sample `name` with exactly `labels`; None when the page has no such sample."""
    return samples(text, name).get(frozenset(labels.items()))


def sample_names(text: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def family_names(text: str) -> set[str]:
    """The metric families the page declares, with samples or not, named as the parser names them (a counter
    without its `_total`)."""
    return {family.name for family in text_string_to_metric_families(text)}
