"""A registered model version as a real MLflow model: a pyfunc `PythonModel` around the `OnlineModel` snapshot.

`mlflow.pyfunc.load_model("models:/coelho-tfd@champion").predict(dataframe)` answers each row as predict-one
answers that version: the row is the domain's event (nested fields as dotted columns, e.g. `device_info.os`),
validated with `Domain.validate(..., purpose="prediction")`, turned into features and answered by the snapshot's
`predict_one`; the result has the domain's prediction fields (`fraud_probability`, `is_fraud`, `risk_level` for
tfd; `eta_seconds`, `eta_minutes` for eta; `cluster`, `cluster_description` for ecci). A frozen version learns
nothing: each prediction is computed from the snapshot alone.

The signature is the domain's schema: every field but the target, required when its role is feature. MLflow is
imported only here and in the registry; the loading process needs this package (functions, eventing) importable.

    >>> from eventing.domains import TFD
    >>> [(c.name, c.type.name, c.required) for c in input_schema(TFD).inputs][:3]
    [('transaction_id', 'string', False), ('user_id', 'string', False), ('timestamp', 'string', False)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import ColSpec, Schema

from eventing.domain import Domain
from eventing.domains import get_domain
from eventing.schema import iter_leaf_fields
from functions.model_state.online_model import OnlineModel

STATE = "state"  # the artifact key of the snapshot
_TYPES = {"string": "string", "timestamp": "string", "number": "double", "integer": "long", "boolean": "boolean"}


def input_schema(domain: Domain) -> Schema:
    """The columns a prediction takes: every event field but the target (dotted paths), features required."""
    return Schema(
        [
            ColSpec(_TYPES[f.type], path, required=f.role == "feature")
            for path, f in domain.leaf_fields()
            if f.role != "target" and f.type in _TYPES
        ]
    )


def output_schema(domain: Domain) -> Schema:
    return Schema(
        [
            ColSpec(_TYPES.get(f.type, "string"), path, required=False)
            for path, f in iter_leaf_fields(domain.prediction_fields)
        ]
    )


def signature(domain: Domain) -> ModelSignature:
    return ModelSignature(inputs=input_schema(domain), outputs=output_schema(domain))


def input_example(domain: Domain, rows: int = 2) -> pd.DataFrame:
    """A few events of the domain's own synthetic stream, without the target."""
    import producers

    wanted = [str(c.name) for c in input_schema(domain).inputs]
    events = [domain.validate(raw) for raw in producers.records(domain.name, rows, seed=0)]
    frame = pd.DataFrame([{path: _at(event, path) for path in wanted} for event in events])
    return frame


def _at(event: Mapping[str, Any], path: str) -> Any:
    value: Any = event
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _nested(row: Mapping[str, Any]) -> dict[str, Any]:
    """A dataframe row (dotted columns) back to the event's nested shape; missing values left out."""
    out: dict[str, Any] = {}
    for path, value in row.items():
        if value is None or isinstance(value, float) and math.isnan(value):
            continue
        if hasattr(value, "item"):  # numpy scalars -> Python
            value = value.item()
        parts = str(path).split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def answer(state: OnlineModel, event: Mapping[str, Any]) -> dict[str, Any]:
    """The prediction fields of predict-one's reply for `event` from `state` (no learning)."""
    domain = state.domain
    clean = domain.validate(dict(event), purpose="prediction")
    return state.task.reply(state, state.predict_one(domain.features(clean)))


class OnlineModelPyfunc(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """A checkpoint's `OnlineModel`, answering a dataframe of events as predict-one answers that version."""

    def load_context(self, context: Any) -> None:
        # Verified like every blob: the loading process needs COELHO_STATE_KEY (codec.StateRefused otherwise).
        self.state = OnlineModel.from_bytes(Path(context.artifacts[STATE]).read_bytes(), where="pyfunc")

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        rows = [answer(self.state, _nested(row)) for row in model_input.to_dict(orient="records")]
        columns = [path for path, _ in iter_leaf_fields(self.state.domain.prediction_fields)]
        return pd.DataFrame(rows, columns=columns)


def log_pyfunc(state: OnlineModel, state_path: Path) -> Any:
    """Log `state` (its snapshot at `state_path`) as the pyfunc model "model" of the active run; its ModelInfo."""
    domain = get_domain(state.domain_name)
    import lz4
    import river

    return mlflow.pyfunc.log_model(
        name="model",
        python_model=OnlineModelPyfunc(),
        artifacts={STATE: str(state_path)},
        signature=signature(domain),
        input_example=input_example(domain),
        # Given, not inferred: inference loads the model in a subprocess and costs seconds per checkpoint.
        pip_requirements=[f"river=={river.__version__}", f"lz4=={lz4.__version__}", f"mlflow=={mlflow.__version__}"],
    )
