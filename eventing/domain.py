"""What a domain is: its event schema, entity key, CloudEvent types, features, models, metrics and the reply
predict-one sends back, in one place.

Producers, functions, the router's manifests, the dashboard forms and the tests read a `Domain` instead of
repeating field lists. The three domains live in `eventing.domains`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from eventing.cloudevent_types import EVENT_KINDS, event_source, event_type
from eventing.schema import Field, Purpose, ValidationError, iter_leaf_fields, validate_fields

Task = Literal["classification", "regression", "clustering"]
# What an event of a domain is: a record, a record whose target comes later in a label, or that label.
EventKind = Literal["record", "unlabeled", "label"]
# Fields a label event carries besides the domain's id, key and target.
LABEL_EXTRAS = frozenset({"timestamp", "kind"})

# Classification: a probability of the positive class at or above it is a positive verdict (metrics and replies).
DECISION_THRESHOLD = 0.5


class NoLabels(ValueError):
    """A label event for a domain that has no target."""


# What every prediction reply carries besides the domain's own `prediction_fields` (see `Domain.reply_fields`).
REPLY_FIELDS: tuple[Field, ...] = (
    Field("domain", "string", "context", "The domain's short name"),
    Field("model", "string", "context", "The model that answered"),
    Field(
        "version",
        "integer",
        "context",
        "Last MLflow version registered for this model; null before its first checkpoint",
        minimum=1,
        nullable=True,
    ),
    Field(
        "frozen",
        "boolean",
        "context",
        "true: the registered version `version` answered as it was registered (it "
        "learns nothing); false: the live model, which keeps learning",
    ),
    Field("events_learned", "integer", "context", "Events the model had learned when it answered", minimum=0),
    Field("seq", "integer", "context", "Position in the domain's event log the model reflects", minimum=0),
)


@dataclass(frozen=True)
class Domain:
    """A live use case: the contract every part of the platform shares."""

    name: str  # short name used in CloudEvent types, Redis keys, URLs: "tfd", "eta", "ecci"
    title: str
    task: Task
    topic: str  # Kafka topic the producer writes (names kept from the original COELHO RealTime)
    key_field: str  # entity key: Kafka record key and CloudEvent partitionkey
    id_field: str  # identifies one event; duplicates of it are learned once
    target: str | None
    fields: tuple[Field, ...]
    features: Callable[[Mapping[str, Any]], dict[str, Any]]  # clean event -> River feature dict
    model_factories: Mapping[str, Callable[[], Any]]  # model name -> fresh River model
    default_model: str
    metric_factories: Callable[[], dict[str, Any]]  # fresh River metrics, keyed by display name
    main_metrics: tuple[str, ...]  # shown on cards and charted over events
    # The model's answer in predict-one's reply (the rest of the reply: `reply_fields`), and the function that
    # turns the task's answer into those values: classification (probability of the positive class),
    # regression (predicted value) and clustering (cluster id or None, that cluster's description).
    prediction_fields: tuple[Field, ...]
    prediction_values: Callable[..., dict[str, Any]]
    description: str = ""
    metric_help: Mapping[str, str] = field(default_factory=dict)  # what it measures, range, what good looks like
    headline_fields: tuple[str, ...] = ()  # event fields listed beside a prediction (the assistant's recent ones)
    profile_fields: tuple[str, ...] = ()  # clustering: fields whose distribution is kept per cluster

    # --- the contract ------------------------------------------------------------------------------
    def validate(self, payload: Any, purpose: Purpose = "record") -> dict[str, Any]:
        """The clean event, or ValidationError naming every bad field (missing, type, range, value).

        purpose "unlabeled": a record whose target arrives later; "label": that later {id, key, target} event.
        """
        if purpose == "label":
            if self.target is None:
                raise ValueError(f"{self.name} has no target, hence no label events")
            wanted = (self.id_field, self.key_field, self.target)
            fields = tuple(f for f in self.fields if f.name in wanted)
            return validate_fields(fields, payload, purpose="record", domain=self.name)
        return validate_fields(self.fields, payload, purpose=purpose, domain=self.name)

    def classify(self, data: Any, kind: str = "auto") -> tuple[EventKind, dict[str, Any]]:
        """(what the event is, the clean event). `kind` is what its CloudEvent type says, "record" or "label";
        "auto" (a Kafka record, no type of its own) takes for a label the data that holds the target and nothing but
        the id, the key, a timestamp and a kind. A record without its target is "unlabeled" (the label follows).
        Raises ValidationError naming every bad field, or NoLabels for a label of a domain without a target.

        >>> from eventing.domains import ETA
        >>> ETA.classify({"trip_id": "t1", "driver_id": "d1", "simulated_actual_travel_time_seconds": 600})
        ('label', {'trip_id': 't1', 'driver_id': 'd1', 'simulated_actual_travel_time_seconds': 600.0})
        """
        if kind == "label" or kind == "auto" and self._looks_like_label(data):
            if self.target is None:
                raise NoLabels(f"{self.name} has no target: it takes no labels")
            return "label", self.validate(data, purpose="label")
        try:
            return "record", self.validate(data, purpose="record")
        except ValidationError as err:
            if self.target and err.errors == {self.target: "missing"}:
                return "unlabeled", self.validate(data, purpose="unlabeled")
            raise

    def _looks_like_label(self, data: Any) -> bool:
        if not isinstance(data, Mapping) or self.target is None:
            return False
        return self.target in data and set(data) <= {self.id_field, self.target, self.key_field, *LABEL_EXTRAS}

    def type(self, kind: str) -> str:
        """CloudEvent type of `kind` ("record", "prediction.requested", "prediction", ...) in this domain."""
        return event_type(self.name, kind)

    def source(self, component: str) -> str:
        return event_source(component, self.name)

    @property
    def event_types(self) -> dict[str, str]:
        return {kind: self.type(kind) for kind in EVENT_KINDS}

    def leaf_fields(self) -> list[tuple[str, Field]]:
        return iter_leaf_fields(self.fields)

    def field_names(self, role: str) -> list[str]:
        return [path for path, f in self.leaf_fields() if f.role == role]

    def reply_fields(self) -> tuple[Field, ...]:
        """Every field of predict-one's reply, in order: `REPLY_FIELDS`, the event id echoed when the request
        carried one, then the domain's `prediction_fields`."""
        echoed = next(f for f in self.fields if f.name == self.id_field)
        return (
            *(
                replace(f, choices=(self.name,))
                if f.name == "domain"
                else replace(f, choices=tuple(self.model_factories))
                if f.name == "model"
                else f
                for f in REPLY_FIELDS
            ),
            replace(echoed, description=f"{echoed.description}, echoed when the request carries it", required=False),
            *self.prediction_fields,
        )

    def make_model(self, name: str | None = None) -> Any:
        model_name = name or self.default_model
        try:
            return self.model_factories[model_name]()
        except KeyError:
            raise ValueError(
                f"unknown model {model_name!r} for {self.name}: choose one of {', '.join(self.model_factories)}"
            ) from None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "task": self.task,
            "topic": self.topic,
            "key_field": self.key_field,
            "id_field": self.id_field,
            "target": self.target,
            "fields": [f.describe() for f in self.fields],
            "reply_fields": [f.describe() for f in self.reply_fields()],
            "event_types": self.event_types,
            "models": list(self.model_factories),
            "default_model": self.default_model,
            "main_metrics": list(self.main_metrics),
        }
