"""Field declarations and the one validation entry point for domain events.

A domain's event schema is a tuple of `Field`s. `validate` turns a raw payload into a clean event or raises a
`ValidationError` naming every bad field and why (missing, wrong type, out of range, unknown value, too long).
Every string is bounded: its declared `max_length`, else DEFAULT_MAX_LENGTH characters.
The reply predict-one sends back is declared with `Field`s too; `check_values` tells whether a reply fits them.

>>> amount = Field("amount", "number", "feature", "Transaction amount", unit="currency units", minimum=0)
>>> validate_fields((amount,), {"amount": "12.5"}, purpose="record")
{'amount': 12.5}
>>> try:
...     validate_fields((amount,), {"amount": -1}, purpose="record")
... except ValidationError as err:
...     print(err.errors)
{'amount': 'out of range: -1 is below the minimum 0'}
>>> try:
...     validate_fields((amount,), {"amount": 10**400}, purpose="record")
... except ValidationError as err:
...     print(err.errors)
{'amount': 'out of range: the number is too large'}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

FieldType = Literal["string", "integer", "number", "boolean", "timestamp", "object"]
# prediction: a field of predict-one's reply that carries the model's answer (see Domain.reply_fields)
FieldRole = Literal["feature", "target", "identifier", "context", "prediction"]
# record: a complete event (target included); prediction: features to predict from (target, identifiers and
# context optional); unlabeled: a record whose target comes later in a `label` event (delayed labels);
# label: {id_field, key_field, target} of an earlier record (Domain.validate selects those fields).
Purpose = Literal["record", "prediction", "unlabeled", "label"]
DEFAULT_MAX_LENGTH = 256  # characters of a string field that declares no max_length of its own


@dataclass(frozen=True)
class Field:
    """One field of a domain event: its type, unit, allowed values or range, and its role."""

    name: str
    type: FieldType
    role: FieldRole
    description: str
    unit: str | None = None
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    required: bool = True
    fields: tuple[Field, ...] = ()  # members of an "object" field
    nullable: bool = False  # a reply's value may be null (events: a null value counts as missing)
    max_length: int | None = None  # characters of a string (None: DEFAULT_MAX_LENGTH)

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly description (docs, the dashboard, the assistant)."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "role": self.role, "description": self.description}
        for key in ("unit", "minimum", "maximum"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.choices is not None:
            out["choices"] = list(self.choices)
        elif self.type == "string":
            out["max_length"] = self.max_length or DEFAULT_MAX_LENGTH
        if not self.required:
            out["required"] = False
        if self.nullable:
            out["nullable"] = True
        if self.fields:
            out["fields"] = [f.describe() for f in self.fields]
        return out


class ValidationError(ValueError):
    """A payload that does not fit its domain's schema. `errors` maps a field path to the reason."""

    def __init__(self, errors: Mapping[str, str], domain: str | None = None) -> None:
        self.errors = dict(errors)
        self.domain = domain
        where = f"invalid {domain} event: " if domain else "invalid event: "
        super().__init__(where + "; ".join(f"{k}: {v}" for k, v in self.errors.items()))

    def to_dict(self) -> dict[str, Any]:
        return {"error": "validation failed", "domain": self.domain, "fields": self.errors, "message": str(self)}


def _is_required(field: Field, purpose: Purpose) -> bool:
    # A prediction request carries features only: no target, identifiers and context are optional.
    if purpose == "prediction" and field.role in ("target", "identifier", "context"):
        return False
    if purpose == "unlabeled" and field.role == "target":
        return False
    return field.required


def _check_range(field: Field, value: float, path: str, errors: dict[str, str]) -> None:
    if field.minimum is not None and value < field.minimum:
        errors[path] = f"out of range: {value:g} is below the minimum {field.minimum:g}"
    elif field.maximum is not None and value > field.maximum:
        errors[path] = f"out of range: {value:g} is above the maximum {field.maximum:g}"


def _clean_value(field: Field, value: Any, path: str, purpose: Purpose, errors: dict[str, str]) -> Any:
    kind = field.type
    if kind == "object":
        if not isinstance(value, Mapping):
            errors[path] = f"wrong type: expected an object with {', '.join(f.name for f in field.fields)}"
            return None
        return _clean_mapping(field.fields, value, purpose, errors, prefix=path + ".")
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        errors[path] = f"wrong type: expected a boolean, got {_short(value)}"
        return None
    if kind in ("integer", "number"):
        if isinstance(value, bool):
            errors[path] = f"wrong type: expected a {kind}, got a boolean"
            return None
        if isinstance(value, str) and len(value) > 64:
            errors[path] = f"wrong type: expected a {kind}, got a string of {len(value)} characters"
            return None
        try:
            number = float(value)
        except OverflowError:
            errors[path] = "out of range: the number is too large"
            return None
        except (TypeError, ValueError):
            errors[path] = f"wrong type: expected a {kind}, got {_short(value)}"
            return None
        if not math.isfinite(number):
            errors[path] = f"wrong type: expected a finite {kind}, got {value!r}"
            return None
        if kind == "integer":
            if number != int(number):
                errors[path] = f"wrong type: expected an integer, got {_short(value)}"
                return None
            _check_range(field, number, path, errors)
            return int(number)
        _check_range(field, number, path, errors)
        return number
    if kind == "timestamp":
        if not isinstance(value, str):
            errors[path] = f"wrong type: expected an ISO 8601 timestamp string, got {_short(value)}"
            return None
        if len(value) > 64:
            errors[path] = f"wrong type: expected an ISO 8601 timestamp, got a string of {len(value)} characters"
            return None
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            errors[path] = f"wrong type: {value!r} is not an ISO 8601 timestamp"
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            return parsed.astimezone(UTC).isoformat()
        except OverflowError:
            errors[path] = f"out of range: {value!r} is not a date in UTC (years 1 to 9999)"
            return None
    # string
    if not isinstance(value, str):
        errors[path] = f"wrong type: expected a string, got {_short(value)}"
        return None
    if field.choices is not None:
        if value not in field.choices:
            errors[path] = f"unknown value {_short(value)}: allowed are {', '.join(field.choices)}"
            return None
        return value
    longest = field.max_length or DEFAULT_MAX_LENGTH
    if len(value) > longest:
        errors[path] = f"too long: {len(value)} characters, the maximum is {longest}"
        return None
    return value


def _short(value: Any, limit: int = 80) -> str:
    """repr(value), cut to `limit` characters: an error message names a bad value without echoing a large one."""
    try:
        text = repr(value) if not isinstance(value, Mapping | list) else type(value).__name__
    except ValueError:  # an int too long to print
        text = type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clean_mapping(
    fields: tuple[Field, ...], payload: Mapping[str, Any], purpose: Purpose, errors: dict[str, str], prefix: str = ""
) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for field in fields:
        path = prefix + field.name
        value = payload.get(field.name)
        if value is None or (isinstance(value, str) and value == "" and field.type != "string"):
            if _is_required(field, purpose):
                errors[path] = "missing"
            continue
        cleaned = _clean_value(field, value, path, purpose, errors)
        if cleaned is not None:
            clean[field.name] = cleaned
    return clean


def validate_fields(
    fields: tuple[Field, ...], payload: Any, purpose: Purpose = "record", domain: str | None = None
) -> dict[str, Any]:
    """Return the clean payload (typed, normalised) or raise ValidationError naming every bad field.

    Unknown extra keys are dropped: the schema is the contract, not what a sender happens to add.
    """
    if not isinstance(payload, Mapping):
        raise ValidationError({"data": f"wrong type: expected a JSON object, got {type(payload).__name__}"}, domain)
    errors: dict[str, str] = {}
    clean = _clean_mapping(fields, payload, purpose, errors)
    if errors:
        raise ValidationError(errors, domain)
    return clean


def value_at(event: Mapping[str, Any], path: str) -> Any:
    """The value at a leaf path ("device_info.os") of an event, or None where it has none.

    >>> value_at({"device_info": {"os": "iOS"}}, "device_info.os"), value_at({"device_info": None}, "device_info.os")
    ('iOS', None)
    """
    value: Any = event
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def iter_leaf_fields(fields: tuple[Field, ...], prefix: str = "") -> list[tuple[str, Field]]:
    """Flatten nested object fields to ("location.lat", Field) pairs, in declaration order."""
    out: list[tuple[str, Field]] = []
    for field in fields:
        if field.type == "object":
            out.extend(iter_leaf_fields(field.fields, prefix + field.name + "."))
        else:
            out.append((prefix + field.name, field))
    return out


def _type_error(field: Field, value: Any) -> str | None:
    if value is None:
        return None if field.nullable else "null, but the field is not nullable"
    kind = field.type
    if kind == "object":
        if not isinstance(value, Mapping):
            return f"expected an object, got {type(value).__name__}"
        return None
    if kind == "boolean":
        return None if isinstance(value, bool) else f"expected a boolean, got {value!r}"
    if kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a {kind}, got {value!r}"
        if kind == "integer" and not isinstance(value, int):
            return f"expected an integer, got {value!r}"
        if not math.isfinite(value):
            return f"expected a finite {kind}, got {value!r}"
        if field.minimum is not None and value < field.minimum:
            return f"{value:g} is below the minimum {field.minimum:g}"
        if field.maximum is not None and value > field.maximum:
            return f"{value:g} is above the maximum {field.maximum:g}"
        return None
    if not isinstance(value, str):
        return f"expected a string, got {value!r}"
    if field.choices is not None and value not in field.choices:
        return f"unknown value {value!r}: allowed are {', '.join(field.choices)}"
    return None


def check_values(fields: tuple[Field, ...], data: Mapping[str, Any], extra_allowed: bool = False) -> dict[str, str]:
    """What is wrong with `data` as a value of `fields`, strictly (no conversion): field -> reason; {} if nothing.

    For what the platform itself produces, e.g. predict-one's replies: a declared field that is missing (unless
    not required), a value of the wrong JSON type, null where the field is not nullable, out of range or not
    among the choices, and (unless `extra_allowed`) a field that is not declared.

    >>> p = Field("p", "number", "prediction", "A probability", minimum=0, maximum=1)
    >>> check_values((p,), {"p": 0.25}), check_values((p,), {"p": "0.25", "q": 1})
    ({}, {'p': "expected a number, got '0.25'", 'q': 'not declared'})
    """
    errors: dict[str, str] = {}
    for field in fields:
        if field.name not in data:
            if field.required:
                errors[field.name] = "missing"
            continue
        problem = _type_error(field, data[field.name])
        if problem is not None:
            errors[field.name] = problem
    if not extra_allowed:
        declared = {f.name for f in fields}
        errors.update({name: "not declared" for name in data if name not in declared})
    return errors


def json_schema(fields: tuple[Field, ...], purpose: Purpose = "record") -> dict[str, Any]:
    """The JSON Schema of a payload of `fields` for `purpose` (the OpenAPI descriptions of the functions): what a
    sender should send. `validate_fields` is the judge, and a little more lenient (numbers as strings, "true").

    >>> json_schema((Field("amount", "number", "feature", "Amount", minimum=0),), "record")["properties"]
    {'amount': {'type': 'number', 'description': 'Amount', 'minimum': 0}}
    """
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in fields:
        properties[field.name] = _field_schema(field, purpose)
        if _is_required(field, purpose):
            required.append(field.name)
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    return out


def _field_schema(field: Field, purpose: Purpose) -> dict[str, Any]:
    if field.type == "object":
        return {**json_schema(field.fields, purpose), "description": field.description}
    kind = {"timestamp": "string", "integer": "integer", "number": "number", "boolean": "boolean"}.get(
        field.type, "string"
    )
    out: dict[str, Any] = {"type": kind, "description": field.description}
    if field.type == "timestamp":
        out["format"] = "date-time"
    elif field.type == "string":
        if field.choices is not None:
            out["enum"] = list(field.choices)
        else:
            out["maxLength"] = field.max_length or DEFAULT_MAX_LENGTH
    if field.minimum is not None:
        out["minimum"] = field.minimum
    if field.maximum is not None:
        out["maximum"] = field.maximum
    if field.nullable:
        out["nullable"] = True
    return out
