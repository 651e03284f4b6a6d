"""Prediction forms generated from a domain declaration: one input per field, validated as the user types.

Inputs follow the declared types: selects for fields with choices, number inputs for numbers (their unit and
range in the label), a checkbox for booleans and a date-time picker for timestamps. Ranges are not enforced
by the inputs themselves: an out-of-range value stays visible and `domain.validate(..., purpose="prediction")`
puts its message right below the field, exactly as the predict function would answer.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import panel as pn

from eventing.domain import Domain
from eventing.schema import Field, ValidationError
from ui.sample import sample_payload

# Fields worth showing beyond the features: when it happened and where (the maps use the coordinates).
_VISIBLE_CONTEXT = ("timestamp", "lat", "lon")


def _range_text(field: Field) -> str:
    if field.minimum is None and field.maximum is None:
        return ""
    low = "" if field.minimum is None else f"{field.minimum:,g}"
    high = "" if field.maximum is None else f"{field.maximum:,g}"
    return f" [{low}–{high}]"


def field_label(path: str, field: Field) -> str:
    """A readable label: "Origin · Latitude (degrees) [-90–90]"."""
    parent = path.rpartition(".")[0]
    name = field.name.replace("_", " ").capitalize()
    if parent:
        name = f"{parent.split('_')[0].capitalize()} · {field.description or name}"
    unit = f" ({'°' if field.unit == 'degrees' else field.unit})" if field.unit else ""
    return f"{name}{unit}{_range_text(field)}"


def is_visible(path: str, field: Field) -> bool:
    if field.role == "feature":
        return True
    return field.role == "context" and field.name in _VISIBLE_CONTEXT


def _make_widget(path: str, field: Field) -> pn.widgets.Widget:
    label = field_label(path, field)
    common: dict[str, Any] = {
        "name": label,
        "sizing_mode": "stretch_width",
        "css_classes": ["field-" + path.replace(".", "-")],  # stable hooks for the browser tests
    }
    if field.choices:
        return pn.widgets.Select(options=list(field.choices), **common)
    if field.type == "boolean":
        return pn.widgets.Checkbox(**common)
    if field.type == "integer":
        return pn.widgets.IntInput(value=None, step=1, **common)
    if field.type == "number":
        step = 0.0001 if field.unit == "degrees" else 0.01
        return pn.widgets.FloatInput(value=None, step=step, format="0[.]0000", **common)
    if field.type == "timestamp":
        return pn.widgets.DatetimePicker(value=None, **common)
    return pn.widgets.TextInput(**common)


def _get_path(payload: dict[str, Any], path: str) -> Any:
    node: Any = payload
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set_path(payload: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = payload
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


class PredictionForm:
    """The inputs of one domain's prediction request, their validation messages and "Randomize All Fields"."""

    def __init__(self, domain: Domain, rng: random.Random | None = None) -> None:
        self.domain = domain
        self.rng = rng or random.Random()
        self.fields = [(p, f) for p, f in domain.leaf_fields() if f.role != "target"]
        self.widgets: dict[str, pn.widgets.Widget] = {}
        self.messages: dict[str, pn.pane.HTML] = {}
        self.hidden: dict[str, Any] = {}  # identifiers and free-text context: sent along, not shown
        self.errors: dict[str, str] = {}
        self._listeners: list[Callable[[str], None]] = []
        self._loading = False
        for path, field in self.fields:
            if not is_visible(path, field):
                continue
            widget = _make_widget(path, field)
            widget.param.watch(lambda event, path=path: self._changed(path), "value")
            self.widgets[path] = widget
            self.messages[path] = pn.pane.HTML("", css_classes=["field-error"], margin=(0, 10, 4, 10))
        self.randomize_button = pn.widgets.Button(
            name="Randomize All Fields", button_type="default", button_style="outline", width=200
        )
        self.randomize_button.on_click(lambda event: self.randomize())
        self.set_values(sample_payload(domain, self.rng))

    # --- values --------------------------------------------------------------------------------------
    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call `listener(path)` after the user edits a field (not after set_values)."""
        self._listeners.append(listener)

    def set_values(self, payload: dict[str, Any]) -> None:
        self._loading = True
        try:
            for path, field in self.fields:
                value = _get_path(payload, path)
                if path not in self.widgets:
                    self.hidden[path] = value
                    continue
                if field.type == "timestamp" and isinstance(value, str):
                    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                    value = parsed.astimezone(UTC).replace(tzinfo=None, microsecond=0)
                self.widgets[path].value = value
        finally:
            self._loading = False
        self.validate()

    def set_value(self, path: str, value: Any) -> None:
        """Set one field programmatically (no change notification)."""
        self._loading = True
        try:
            self.widgets[path].value = value
        finally:
            self._loading = False
        self.validate()

    def payload(self) -> dict[str, Any]:
        """The request as the domain expects it (nested objects, ISO timestamps), including hidden fields."""
        out: dict[str, Any] = {}
        for path, field in self.fields:
            if path in self.widgets:
                value = self.widgets[path].value
                if field.type == "timestamp" and isinstance(value, datetime):
                    value = value.replace(tzinfo=UTC).isoformat()
            else:
                value = self.hidden.get(path)
            if value is not None and value != "":
                _set_path(out, path, value)
        return out

    def value(self, path: str) -> Any:
        return _get_path(self.payload(), path)

    def randomize(self) -> None:
        self.set_values(sample_payload(self.domain, self.rng))
        for listener in self._listeners:
            listener("*")

    # --- validation ----------------------------------------------------------------------------------
    def validate(self) -> dict[str, Any] | None:
        """The clean request, or None with every bad field's message shown below it."""
        try:
            clean = self.domain.validate(self.payload(), purpose="prediction")
            self.errors = {}
        except ValidationError as err:
            clean, self.errors = None, dict(err.errors)
        for path, pane in self.messages.items():
            message = self.errors.get(path, "")
            pane.object = f"⚠ {message}" if message else ""
            pane.visible = bool(message)
        return clean

    def _changed(self, path: str) -> None:
        if self._loading:
            return
        self.validate()
        for listener in self._listeners:
            listener(path)

    # --- layout --------------------------------------------------------------------------------------
    def field_panel(self, path: str) -> pn.Column:
        return pn.Column(self.widgets[path], self.messages[path], sizing_mode="stretch_width", margin=0)

    def layout(self, ncols: int = 3, exclude: tuple[str, ...] = ()) -> pn.GridBox:
        cells = [self.field_panel(p) for p in self.widgets if p not in exclude]
        return pn.GridBox(*cells, ncols=ncols, sizing_mode="stretch_width")
