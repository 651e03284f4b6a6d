"""The assistant's tools: a fixed registry of read-only tools, their input validation and bounded results.

The registry is a module constant: nothing a user, a page or an event says can add to it. A tool call from
the model is run only if its name is in `TOOLS` and its input passes the tool's schema (types, enums, ranges,
no unknown keys, bounded sizes); anything else gets an error tool_result and runs nothing. Every tool reads
through `data.PlatformReader`, whose Redis handle only allows read commands, and every result is
redacted and cut to `MAX_RESULT_CHARS` before the model sees it.

>>> validate_input("get_model_info", {"domain": "tfd"})
{'domain': 'tfd'}
>>> validate_input("get_model_info", {"domain": "tfd", "action": "delete"})
Traceback (most recent call last):
...
functions.assistant.tools.ToolInputError: unknown input field(s): action
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from eventing.domains import DOMAINS
from eventing.domains.ecci import PROFILE_FIELDS
from functions.assistant.docs_search import search_docs
from functions.assistant.redaction import PersonalDataMinimizer, SecretRedactor
from functions.lake.tables import TABLES

MAX_RESULT_CHARS = 6_000
MAX_EVENT_CHARS = 4_000
# What one query_lake call may take from the sql function (less than a person's query on the SQL page).
LAKE_QUERY_ROWS = 200
LAKE_QUERY_SECONDS = 5.0

_LAKE_TABLES = ", ".join(f"{table} ({domain})" for table, domain in TABLES.items())
_DOMAIN = {
    "type": "string",
    "enum": sorted(DOMAINS),
    "description": ", ".join(f"{d.name} ({d.title})" for d in DOMAINS.values()),
}


class ToolInputError(ValueError):
    """The model asked for a tool that does not exist or gave it an invalid input."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any]

    def to_api(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema}


def _schema(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "get_page_state",
            "The dashboard page the user is looking at: its name, the prediction form's values and the last "
            "prediction shown, exactly as the dashboard sent them with this question.",
            _schema({}),
        ),
        Tool(
            "get_model_info",
            "Live model of a domain from Redis: model name, events learned, training paused or live, all metrics "
            "(test-then-train) with what each measures, drift count, recent history of the main metrics; and its "
            "MLflow registered versions (aliases, events learned, metrics at checkpoint).",
            _schema({"domain": _DOMAIN}, ("domain",)),
        ),
        Tool(
            "get_cluster_analytics",
            "E-commerce (ecci) clusters found by DBSTREAM: samples per cluster, each cluster's description and "
            "value distributions (event type, category, device, price, time on page), and the standardised "
            "features that separate each cluster centre from the average interaction.",
            _schema(
                {
                    "cluster": {"type": "integer", "minimum": 0, "maximum": 10_000, "description": "only this cluster"},
                    "feature": {
                        "type": "string",
                        "enum": list(PROFILE_FIELDS),
                        "description": "only this profile feature",
                    },
                }
            ),
        ),
        Tool(
            "get_recent_predictions",
            "The latest predictions the model made for a domain (newest first), each with its inputs summary "
            "and, once known, the true outcome.",
            _schema({"domain": _DOMAIN, "limit": {"type": "integer", "minimum": 1, "maximum": 20}}, ("domain",)),
        ),
        Tool(
            "explain_prediction",
            "Explain one prediction from the live model itself: for linear models each feature's contribution "
            "(weight x scaled value), for trees the decision path, for DBSTREAM the distances to the nearest "
            "cluster centres. Without `event`, explains the prediction form currently on the page.",
            _schema(
                {
                    "domain": _DOMAIN,
                    "event": {
                        "type": "object",
                        "description": "the event's fields (as in the prediction form); omit to use the page's form",
                    },
                },
                ("domain",),
            ),
        ),
        Tool(
            "get_platform_health",
            "Platform health now: which services are up (functions, Redis, MLflow, S3, broker), events learned "
            "per second per domain, request errors by function, drifts detected, producers' state.",
            _schema({}),
        ),
        Tool(
            "describe_domain",
            "A domain's declaration: its event fields (types, units, ranges, choices), target, available models "
            "and what each metric means.",
            _schema({"domain": _DOMAIN}, ("domain",)),
        ),
        Tool(
            "compare_models",
            "A/B comparison of a domain's live models: which is the champion (served by default) and the challenger, "
            "the traffic split, and for each pair of live models paired tests on the same events (McNemar and log "
            "loss for tfd, absolute error for eta, ARI and silhouette for ecci) with the difference, its 95% "
            "confidence interval and a plain verdict naming the sample size; plus each served version's score on "
            "live traffic once labels arrived.",
            _schema({"domain": _DOMAIN}, ("domain",)),
        ),
        Tool(
            "search_docs",
            "Search the project's own documentation (README.md, SECURITY.md, docs/*.md and the architecture decision "
            "records docs/adr/*.md) by keywords: the best passages with their file and section. Use it for how-to "
            "and why questions about the platform (how to pause training, why predict-one is fast, what a metric "
            "or alert means, who may call what) and cite the file in the answer.",
            _schema(
                {
                    "query": {"type": "string", "maxLength": 300, "description": "keywords"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 8, "description": "passages (default 4)"},
                },
                ("query",),
            ),
        ),
        Tool(
            "query_lake",
            "Run one read-only SQL query (DuckDB dialect, a single SELECT) over the lake: every event of the streams "
            f"in Delta tables {_LAKE_TABLES}, and `<table>_labels` (delayed labels) where it exists. Columns are "
            "the domain's event fields with nested ones joined by `_` (origin.lat -> origin_lat), plus the "
            "CloudEvent id and source, the arrival time and an event-date partition column: `DESCRIBE <table>` "
            f"lists them. At most {LAKE_QUERY_ROWS} rows and {LAKE_QUERY_SECONDS:g} s: aggregate (GROUP BY, "
            "count, avg) rather than list rows. A refused query comes back with the reason (syntax error with its "
            "position, unknown table or column with those that exist): fix it and try again.",
            _schema(
                {
                    "query": {"type": "string", "maxLength": 4_000, "description": "one SELECT (or WITH ... SELECT)"},
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": LAKE_QUERY_ROWS,
                        "description": "rows returned at most (default 50)",
                    },
                },
                ("query",),
            ),
        ),
    )
}


def _check(name: str, schema: Mapping[str, Any], value: Any) -> Any:
    kind = schema.get("type")
    if kind == "string":
        if not isinstance(value, str):
            raise ToolInputError(f"{name} must be a string")
        if len(value) > schema.get("maxLength", 200):
            raise ToolInputError(f"{name} is too long")
        if "enum" in schema and value not in schema["enum"]:
            raise ToolInputError(f"{name} must be one of {', '.join(map(str, schema['enum']))}")
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ToolInputError(f"{name} must be an integer")
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            raise ToolInputError(f"{name} must be between {schema.get('minimum')} and {schema.get('maximum')}")
    elif kind == "object":
        if not isinstance(value, dict):
            raise ToolInputError(f"{name} must be an object")
        if len(json.dumps(value, default=str)) > MAX_EVENT_CHARS:
            raise ToolInputError(f"{name} is larger than {MAX_EVENT_CHARS} characters")
    return value


def validate_input(tool_name: str, tool_input: Any) -> dict[str, Any]:
    """The checked input of a tool call, or ToolInputError saying what is wrong."""
    tool = TOOLS.get(tool_name)
    if tool is None:
        raise ToolInputError(f"unknown tool {str(tool_name)[:60]!r}: the assistant can only use {', '.join(TOOLS)}")
    if not isinstance(tool_input, dict):
        raise ToolInputError("the tool input must be a JSON object")
    properties = tool.input_schema["properties"]
    unknown = sorted(set(tool_input) - set(properties))
    if unknown:
        raise ToolInputError(f"unknown input field(s): {', '.join(str(u)[:40] for u in unknown)}")
    missing = [name for name in tool.input_schema["required"] if name not in tool_input]
    if missing:
        raise ToolInputError(f"missing input field(s): {', '.join(missing)}")
    return {name: _check(name, properties[name], value) for name, value in tool_input.items()}


def bound(value: Any, limit: int = MAX_RESULT_CHARS) -> str:
    """JSON text of `value` in at most `limit` characters: long lists are shortened first, then the text is cut."""
    text = json.dumps(value, default=str, separators=(",", ":"))
    if len(text) <= limit:
        return text
    shrunk = value
    for keep in (20, 10, 5, 3, 1):
        shrunk = _shorten_lists(shrunk, keep)
        text = json.dumps(shrunk, default=str, separators=(",", ":"))
        if len(text) <= limit:
            return text
    note = '..."[truncated]"'
    return text[: limit - len(note)] + note


def _shorten_lists(value: Any, keep: int) -> Any:
    if isinstance(value, list):
        items = [_shorten_lists(v, keep) for v in value[:keep]]
        if len(value) > keep:
            items.append(f"... {len(value) - keep} more")
        return items
    if isinstance(value, dict):
        if len(value) > keep * 4:
            kept = dict(list(value.items())[: keep * 4])
            kept["..."] = f"{len(value) - keep * 4} more keys"
            value = kept
        return {k: _shorten_lists(v, keep) for k, v in value.items()}
    if isinstance(value, str) and len(value) > 40 * keep:
        return value[: 40 * keep] + "..."
    return value


ToolFunction = Callable[..., Any]


class ToolBox:
    """Runs tool calls for one chat request: validated, read-only, redacted, bounded."""

    def __init__(
        self,
        reader: Any,
        page_context: Mapping[str, Any],
        redactor: SecretRedactor,
        minimizer: PersonalDataMinimizer | None = None,
    ) -> None:
        self.reader = reader
        self.page_context = dict(page_context)
        self.redactor = redactor
        self.minimizer = minimizer
        self._functions: dict[str, ToolFunction] = {
            "get_page_state": lambda: (
                self.page_context or {"page": "unknown", "note": "the dashboard sent no page state"}
            ),
            "get_model_info": reader.model_info,
            "get_cluster_analytics": reader.cluster_analytics,
            "get_recent_predictions": reader.recent_predictions,
            "explain_prediction": self._explain,
            "get_platform_health": reader.platform_health,
            "describe_domain": reader.describe_domain,
            "query_lake": reader.query_lake,
            "search_docs": search_docs,
            "compare_models": self._compare,
        }
        assert set(self._functions) == set(TOOLS), "every registered tool has exactly one implementation"

    def _explain(self, domain: str, event: Mapping[str, Any] | None = None) -> Any:
        if event is None:
            page = str(self.page_context.get("page", ""))
            form = self.page_context.get("form")
            if page != domain or not isinstance(form, Mapping):
                return {"error": f"no event given and the page ({page or 'unknown'}) has no {domain} form to explain"}
            event = form
        return self.reader.explain_prediction(domain, event)

    def _compare(self, domain: str) -> Any:
        from eventing.domains import get_domain
        from functions.model_state import ab, ab_outcomes, ab_served
        from functions.model_state.keys import key

        d = get_domain(domain)
        redis = self.reader.redis  # read-only: every command below is a read
        result = ab_outcomes.compare(redis, d, seed=False)
        result["aliases"] = ab.aliases(redis, d)
        result["split"] = ab.read_split(redis.get(key(d.name, "split"))) or None
        result["live_scores"] = ab_served.live_scores(redis, d)
        return result

    def run(self, tool_name: str, tool_input: Any) -> tuple[str, bool]:
        """(result text for the model, is_error). Never raises."""
        try:
            checked = validate_input(tool_name, tool_input)
            result = self._functions[tool_name](**checked)
            is_error = isinstance(result, dict) and set(result) == {"error"}
        except ToolInputError as exc:
            result, is_error = {"error": str(exc)}, True
        except Exception as exc:  # a dependency down, a model not there yet: the model should say so
            result, is_error = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}, True
        if self.minimizer is not None:  # personal data of the events' people stays here (redaction.py)
            result = self.minimizer.minimize(result)
        return bound(self.redactor.redact_data(result)), is_error
