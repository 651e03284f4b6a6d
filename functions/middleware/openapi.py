"""OpenAPI 3 descriptions of the functions' HTTP endpoints, served by each function at GET /openapi.json.

Every function has the middleware's paths (POST / for CloudEvents, the probes, /metrics); a function adds its own
(`paths`): predict-one's `POST /predict/<domain>` with each domain's request and reply schemas generated from its
declaration (`eventing.schema.json_schema`), the assistant's /chat, SQL's /sql and /tables. A function that asks for
COELHO_API_TOKEN (`functions.middleware.auth.PROTECTED`) declares the bearer scheme on every path but the open ones.
The tests fuzz each description with Schemathesis (tests/functions/test_edge_fuzz.py): no input gets a 5xx.

    >>> spec = describe("learn", accepted=["com.coelho.realtime.tfd.record"], protected=False)
    >>> sorted(spec["paths"]), spec["openapi"]
    (['/', '/health/liveness', '/health/readiness', '/metrics', '/openapi.json'], '3.0.3')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventing.domain import Domain
from eventing.schema import json_schema

__all__ = [
    "FUNCTION_EVENTS",
    "FUNCTION_PATHS",
    "describe",
    "domain_events",
    "error",
    "json_body",
    "named_list",
    "predict_paths",
]

ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "description": "What is wrong (never an internal address or a stack trace)",
}


def error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


def json_body(schema: Mapping[str, Any], description: str = "") -> dict[str, Any]:
    return {"required": True, "description": description, "content": {"application/json": {"schema": dict(schema)}}}


def ok(schema: Mapping[str, Any], description: str = "OK", media: str = "application/json") -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": dict(schema)}}}


BAD_INPUT = {
    "400": error("Not valid: the reason, and for domain data each bad field"),
    "413": error("The body is larger than the function's limit (COELHO_MAX_BODY_BYTES)"),
}
CE_HEADERS = [
    {"name": f"ce-{name}", "in": "header", "required": True, "schema": schema}
    for name, schema in (
        ("specversion", {"type": "string", "enum": ["1.0"]}),
        ("id", {"type": "string", "minLength": 1, "maxLength": 128}),
        ("source", {"type": "string", "minLength": 1, "maxLength": 256}),
    )
]


def _cloudevent_path(accepted: list[str], request_schema: Mapping[str, Any] | None) -> dict[str, Any]:
    headers = [
        *CE_HEADERS,
        {"name": "ce-type", "in": "header", "required": True, "schema": {"type": "string", "enum": accepted}},
    ]
    return {
        "post": {
            "summary": "A CloudEvent in binary mode (structured mode too: Content-Type application/cloudevents+json)",
            "parameters": headers,
            "requestBody": json_body(request_schema or {"type": "object"}, "The event's data"),
            "responses": {
                "200": {"description": "The reply, a binary-mode CloudEvent"},
                "204": {"description": "Done; no reply"},
                **BAD_INPUT,
                "503": error("A dependency is down: retry"),
            },
        }
    }


def predict_paths(domains: Mapping[str, Domain]) -> dict[str, Any]:
    """POST /predict/<domain> of each domain: the features in, the reply's fields out, from the declarations."""
    paths: dict[str, Any] = {}
    for name, domain in domains.items():
        query = [
            {"name": "model", "in": "query", "schema": {"type": "string", "enum": list(domain.model_factories)}},
            {"name": "version", "in": "query", "schema": {"type": "string", "maxLength": 16}},
            {"name": "alias", "in": "query", "schema": {"type": "string", "maxLength": 32}},
        ]
        paths[f"/predict/{name}"] = {
            "post": {
                "summary": f"A prediction of {domain.title} from its features",
                "parameters": query,
                "requestBody": json_body(json_schema(domain.fields, "prediction"), "The event's fields"),
                "responses": {
                    "200": ok(json_schema(domain.reply_fields()), "The prediction"),
                    **BAD_INPUT,
                    "503": error("Model state is not fresh, or a registered version cannot be loaded: retry"),
                },
            }
        }
    return paths


def describe(
    name: str,
    accepted: list[str],
    protected: bool,
    paths: Mapping[str, Any] | None = None,
    event_schema: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The OpenAPI document of function `name`: the middleware's paths, then the function's own."""
    all_paths: dict[str, Any] = {
        "/": _cloudevent_path(accepted, event_schema),
        "/health/liveness": {"get": {"summary": "Liveness probe", "security": [], "responses": {"200": ok(_STATUS)}}},
        "/health/readiness": {
            "get": {
                "summary": "Readiness probe: 503 with the reason while a dependency is not ready",
                "security": [],
                "responses": {"200": ok(_STATUS), "503": ok(_STATUS, "Not ready")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "security": [],
                "responses": {"200": ok({"type": "string"}, "Prometheus text format", "text/plain")},
            }
        },
        "/openapi.json": {
            "get": {"summary": "This description", "security": [], "responses": {"200": ok({"type": "object"})}}
        },
        **(paths or {}),
    }
    spec: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": f"COELHO RealTime {name}",
            "version": "1",
            "description": "A function of COELHO RealTime (docs/runtime.md); SECURITY.md says who may call it.",
        },
        "paths": all_paths,
    }
    if protected:
        spec["components"] = {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "COELHO_API_TOKEN, when the function is deployed with one",
                }
            }
        }
        spec["security"] = [{"bearer": []}]
        for item in all_paths.values():
            for operation in item.values():
                if operation.get("security") != []:
                    operation.setdefault("responses", {})["401"] = error("No bearer token, or not the right one")
    return spec


_STATUS = {"type": "object", "properties": {"status": {"type": "string"}, "function": {"type": "string"}}}


def sql_paths() -> dict[str, Any]:
    """The SQL service's POST /sql and GET /tables (functions/sql.py)."""
    request = {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "One read-only SELECT over the lake's tables"},
            "limit": {"type": "integer", "minimum": 1, "description": "Rows returned at most"},
            "version": {
                "oneOf": [
                    {"type": "integer", "minimum": 0},
                    {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
                ],
                "description": "A Delta version of every table, or per table",
            },
            "as_of": {"type": "string", "format": "date-time", "description": "Read the tables as they were then"},
            "timeout_s": {
                "type": "number",
                "minimum": 0,
                "exclusiveMinimum": True,
                "description": "At most the service's limit",
            },
        },
        "required": ["query"],
        "additionalProperties": False,
    }
    answer = {
        "type": "object",
        "properties": {
            "columns": {"type": "array", "items": {"type": "object"}},
            "rows": {"type": "array", "items": {"type": "array"}},
            "row_count": {"type": "integer"},
            "truncated": {"type": "boolean"},
        },
    }
    return {
        "/sql": {
            "post": {
                "summary": "A read-only SQL query over the lake",
                "requestBody": json_body(request),
                "responses": {"200": ok(answer), **BAD_INPUT, "503": error("The lake's S3 store is unreachable")},
            }
        },
        "/tables": {
            "get": {
                "summary": "The lake's tables, their columns and versions",
                "responses": {"200": ok({"type": "object"}), "503": error("The lake's S3 store is unreachable")},
            }
        },
    }


def chat_paths() -> dict[str, Any]:
    """The assistant's POST /chat, GET /chat/history and GET /chat/config (functions/chat.py)."""
    session = {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,64}$"}
    question = {
        "type": "object",
        "properties": {
            "session_id": session,
            "message": {"type": "string", "minLength": 1, "maxLength": 4000},
            "page": {"type": "object", "description": "The page the user is on (the dashboard fills it)"},
        },
        "required": ["session_id", "message"],
    }
    refused = error("Refused: the reason; Retry-After when retrying helps")
    return {
        "/chat": {
            "post": {
                "summary": "A question; the answer streams as NDJSON (or server-sent events)",
                "requestBody": json_body(question),
                "responses": {
                    "200": ok(
                        {"type": "string"},
                        "NDJSON events: start, text, tool, tool_result, done",
                        "application/x-ndjson",
                    ),
                    **BAD_INPUT,
                    "429": refused,
                    "503": refused,
                },
            }
        },
        "/chat/history": {
            "get": {
                "summary": "The session's conversation (only the session's own)",
                "parameters": [{"name": "session_id", "in": "query", "required": True, "schema": session}],
                "responses": {"200": ok({"type": "object"}), "400": refused, "503": refused},
            }
        },
        "/chat/config": {
            "get": {"summary": "The model and whether a key is set", "responses": {"200": ok({"type": "object"})}}
        },
    }


def _predict() -> dict[str, Any]:
    from eventing.domains import DOMAINS

    return predict_paths(DOMAINS)


# The paths each function adds to the middleware's, by function name.
FUNCTION_PATHS = {"predict": _predict, "sql": sql_paths, "chat": chat_paths}


def domain_events(purpose: str) -> dict[str, Any]:
    """The data of any domain's event for `purpose` (record, prediction...): one schema per domain."""
    from eventing.domains import DOMAINS

    return {"oneOf": [json_schema(d.fields, purpose) for d in DOMAINS.values()]}  # type: ignore[arg-type]


def named_list(key: str, names: list[str]) -> dict[str, Any]:
    """{key: [name, ...]} with names from a closed list."""
    return {"type": "object", "properties": {key: {"type": "array", "items": {"type": "string", "enum": names}}}}


def _checkpoint_events() -> dict[str, Any]:
    from eventing.domains import DOMAINS

    return named_list("domains", list(DOMAINS))


def _chat_events() -> dict[str, Any]:
    schema: dict[str, Any] = chat_paths()["/chat"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return schema


def _sql_events() -> dict[str, Any]:
    schema: dict[str, Any] = sql_paths()["/sql"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return schema


# The data of the CloudEvents each function takes at POST /, by function name (the event types are listed apart).
FUNCTION_EVENTS = {
    "predict": lambda: domain_events("prediction"),
    "learn": lambda: domain_events("record"),
    "checkpoint": _checkpoint_events,
    "chat": _chat_events,
    "sql": _sql_events,
}
