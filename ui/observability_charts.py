"""The Observability page's charts, each declared once as `ChartQuery` lines (which metric, how to aggregate it),
whatever the numbers are read from (ui/metrics_sources.py); `promql()` renders a line for Prometheus.

>>> ChartQuery("Learned", "coelho_events_learned_total", "rate", by="domain").promql()
'sum by (domain) (rate(coelho_events_learned_total[1m]))'
>>> ChartQuery("p95", "coelho_function_request_seconds", "quantile", quantile=0.95).promql()
'histogram_quantile(0.95, sum by (le) (rate(coelho_function_request_seconds_bucket[1m])))'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["rate", "quantile", "value"]
Point = tuple[float, float]  # (unix seconds, value)

RATE_WINDOW = "1m"


@dataclass(frozen=True)
class ChartQuery:
    """One line (or one line per value of `by`) on a chart, declared independently of where the data comes from.

    kind: "rate" = per-second rate of a counter, summed; "quantile" = histogram_quantile over all series;
    "value" = a gauge (or counter) summed as it is. `match` holds exact label matchers, `exclude` negative regex
    matchers (e.g. {"code": "2.."} keeps only non-2xx responses).
    """

    label: str
    metric: str
    kind: Kind
    by: str | None = None
    quantile: float = 0.5
    match: Mapping[str, str] = field(default_factory=dict)
    exclude: Mapping[str, str] = field(default_factory=dict)
    window: str = RATE_WINDOW  # range of rate(); PromQL divides by it, so a series younger than it reads low
    scale: float = 1.0  # multiply the values (60: a per-second rate drawn per minute)

    def _selector(self, name: str) -> str:
        parts = [f'{k}="{v}"' for k, v in sorted(self.match.items())]
        parts += [f'{k}!~"{v}"' for k, v in sorted(self.exclude.items())]
        return name + ("{" + ",".join(parts) + "}" if parts else "")

    def promql(self) -> str:
        """The PromQL of this line.

        >>> ChartQuery("per min", "x_total", "rate", scale=60.0).promql()
        '60 * sum (rate(x_total[1m]))'
        """
        if self.scale != 1.0:
            return f"{self.scale:g} * {ChartQuery(**{**self.__dict__, 'scale': 1.0}).promql()}"
        grouping = f"sum by ({self.by}) " if self.by else "sum "
        if self.kind == "rate":
            return f"{grouping}(rate({self._selector(self.metric)}[{self.window}]))"
        if self.kind == "quantile":
            le = f"le, {self.by}" if self.by else "le"
            inner = f"sum by ({le}) (rate({self._selector(self.metric + '_bucket')}[{self.window}]))"
            return f"histogram_quantile({self.quantile}, {inner})"
        return f"{grouping}({self._selector(self.metric)})"

    def accepts(self, labels: Mapping[str, str]) -> bool:
        import re

        if any(labels.get(k) != v for k, v in self.match.items()):
            return False
        return not any(re.fullmatch(v, labels.get(k, "")) for k, v in self.exclude.items())


@dataclass(frozen=True)
class Chart:
    """A chart of the page. `zero_when_empty`: no series means none happened (errors), drawn as a line at 0."""

    title: str
    unit: str
    queries: tuple[ChartQuery, ...]
    zero_when_empty: bool = False


# Metric names exported by the platform (functions/, eventing/router/, producers/); the alert rules and the
# Grafana dashboards in knative/monitoring/ query the same names, and tests/observability checks they exist.
LEARNED = "coelho_events_learned_total"
PRODUCED = "coelho_producer_events_total"
REQUESTS = "coelho_function_requests_total"
LATENCY = "coelho_function_request_seconds"
ROUTER_LAG = "coelho_router_consumer_lag"
DEAD_LETTERED = "coelho_router_dead_lettered_total"
DRIFT = "coelho_drift_detected_total"
DASHBOARD_SESSIONS = "coelho_dashboard_sessions"
DASHBOARD_PAGES = "coelho_dashboard_page_loads_total"
DASHBOARD_CLICKS = "coelho_dashboard_prediction_clicks_total"
DASHBOARD_CALLBACKS = "coelho_dashboard_callback_seconds"
LAKE_ROWS = "coelho_lake_rows_written_total"
LAKE_LAG = "coelho_lake_lag_seconds"

CHARTS: tuple[Chart, ...] = (
    Chart(
        "Events per second",
        "events/s",
        (
            ChartQuery("learned", LEARNED, "rate", by="domain"),
            ChartQuery("produced", PRODUCED, "rate", by="domain"),
        ),
    ),
    Chart(
        "Function latency percentiles",
        "seconds",
        tuple(ChartQuery(f"p{int(q * 100)}", LATENCY, "quantile", quantile=q) for q in (0.5, 0.95, 0.99)),
    ),
    Chart(
        "Errors per second",
        "errors/s",
        (
            ChartQuery("function errors", REQUESTS, "rate", by="function", exclude={"code": "2.."}),
            ChartQuery("dead-lettered", DEAD_LETTERED, "rate", by="trigger"),
        ),
        zero_when_empty=True,  # a failure counter is exported once it counts: no series means no errors
    ),
    Chart("Consumer lag", "events", (ChartQuery("lag", ROUTER_LAG, "value", by="consumer"),)),
    Chart("Drift detections", "detections", (ChartQuery("drift", DRIFT, "value", by="domain"),)),
    Chart("Lake: rows committed per second", "rows/s", (ChartQuery("rows", LAKE_ROWS, "rate", by="domain"),)),
    Chart(
        "Dashboard: sessions, page loads and Predict clicks",
        "sessions · per minute",
        (
            ChartQuery("sessions open", DASHBOARD_SESSIONS, "value"),
            ChartQuery("page loads/min", DASHBOARD_PAGES, "rate", scale=60.0),
            ChartQuery("Predict clicks/min", DASHBOARD_CLICKS, "rate", scale=60.0),
        ),
    ),
    Chart(
        "Dashboard: callback latency",
        "seconds",
        tuple(
            ChartQuery(f"p{int(q * 100)} {op}", DASHBOARD_CALLBACKS, "quantile", quantile=q, match={"operation": op})
            for op in ("page_refresh", "predict")
            for q in (0.5, 0.95)
        ),
    ),
    Chart("Lake: arrival to commit", "seconds", (ChartQuery("p95", LAKE_LAG, "quantile", quantile=0.95),)),
)
