"""Estimated Time of Arrival: regression of a trip's actual travel time in seconds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from eventing.domain import Domain
from eventing.schema import Field

WEATHER = ("clear", "clouds", "rain", "heavy_rain", "snow", "fog")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
VEHICLE_TYPES = ("sedan", "suv", "van", "motorbike", "electric", "truck")

_coordinates = (
    Field("lat", "number", "feature", "Latitude", unit="degrees", minimum=-90, maximum=90),
    Field("lon", "number", "feature", "Longitude", unit="degrees", minimum=-180, maximum=180),
)

FIELDS: tuple[Field, ...] = (
    Field("trip_id", "string", "identifier", "Unique id of the trip", max_length=128),
    Field(
        "driver_id", "string", "identifier", "Driver; the entity key that orders this driver's trips", max_length=128
    ),
    Field("vehicle_id", "string", "identifier", "Vehicle used", max_length=128),
    Field("timestamp", "timestamp", "context", "Trip start (ISO 8601, UTC)"),
    Field("origin", "object", "feature", "Pick-up point", fields=_coordinates),
    Field("destination", "object", "feature", "Drop-off point", fields=_coordinates),
    Field("estimated_distance_km", "number", "feature", "Road distance estimate", unit="km", minimum=0, maximum=500),
    Field("weather", "string", "feature", "Weather at departure", choices=WEATHER),
    Field("temperature_celsius", "number", "feature", "Air temperature", unit="°C", minimum=-40, maximum=55),
    Field("day_of_week", "string", "feature", "Day of the week of departure", choices=DAYS),
    Field("hour_of_day", "integer", "feature", "Hour of departure", unit="h", minimum=0, maximum=23),
    Field("driver_rating", "number", "feature", "Driver's rating", unit="stars", minimum=1, maximum=5),
    Field("vehicle_type", "string", "feature", "Kind of vehicle", choices=VEHICLE_TYPES),
    Field(
        "initial_estimated_travel_time_seconds",
        "number",
        "feature",
        "Routing engine's naive estimate",
        unit="s",
        minimum=0,
        maximum=86_400,
    ),
    Field(
        "simulated_actual_travel_time_seconds",
        "number",
        "target",
        "Ground truth: the trip's actual duration",
        unit="s",
        minimum=0,
        maximum=86_400,
    ),
)


PREDICTION_FIELDS: tuple[Field, ...] = (
    Field("eta_seconds", "number", "prediction", "Predicted travel time", unit="s", minimum=0),
    Field(
        "eta_minutes",
        "number",
        "prediction",
        "Predicted travel time in minutes: eta_seconds / 60",
        unit="min",
        minimum=0,
    ),
)


def prediction_values(seconds: float) -> dict[str, Any]:
    """The reply's prediction fields from the model's travel time in seconds."""
    return {"eta_seconds": seconds, "eta_minutes": seconds / 60}


def features(event: Mapping[str, Any]) -> dict[str, Any]:
    """River features of a clean trip (no identifiers, no target)."""
    hour = int(event["hour_of_day"])
    day = event["day_of_week"]
    weekday = day not in ("Saturday", "Sunday")
    return {
        "estimated_distance_km": event["estimated_distance_km"],
        "initial_estimated_travel_time_seconds": event["initial_estimated_travel_time_seconds"],
        "temperature_celsius": event["temperature_celsius"],
        "driver_rating": event["driver_rating"],
        "hour_of_day": hour,
        "rush_hour": float(weekday and (7 <= hour <= 9 or 16 <= hour <= 19)),
        "weekday": float(weekday),
        "origin_lat": event["origin"]["lat"],
        "origin_lon": event["origin"]["lon"],
        "destination_lat": event["destination"]["lat"],
        "destination_lon": event["destination"]["lon"],
        "weather": event["weather"],
        "vehicle_type": event["vehicle_type"],
        "day_of_week": day,
        "hour_bucket": f"h{hour:02d}",
    }


NUMERIC = (
    "estimated_distance_km",
    "initial_estimated_travel_time_seconds",
    "temperature_celsius",
    "driver_rating",
    "hour_of_day",
    "rush_hour",
    "weekday",
)
CATEGORICAL = ("weather", "vehicle_type", "day_of_week", "hour_bucket")


def _encoded() -> Any:
    from river import compose, preprocessing

    return (compose.Select(*NUMERIC) | preprocessing.StandardScaler()) + (
        compose.Select(*CATEGORICAL) | preprocessing.OneHotEncoder()
    )


# Default: a Hoeffding adaptive tree regressor over the encoded features. Measured on this machine kind
# (bench/models.py): MAE 4.00 min at 2.4-2.8k events/s with 280 KB of state, against
# 5.39 min for linear regression (17-21k events/s, 3 KB) and 5.07 min for a 10-tree ARF (159 events/s, 22 MB).
# River is imported inside the factories: producers, the router and the CLI read these declarations without it.
def _hoeffding_adaptive_tree() -> Any:
    from river import tree

    return _encoded() | tree.HoeffdingAdaptiveTreeRegressor(seed=42)


def _linear_regression() -> Any:
    from river import linear_model, optim, preprocessing

    return _encoded() | preprocessing.TargetStandardScaler(linear_model.LinearRegression(optimizer=optim.SGD(0.01)))


def _adaptive_random_forest() -> Any:
    from river import forest

    return _encoded() | forest.ARFRegressor(n_models=10, seed=42)


MODEL_FACTORIES = {
    "hoeffding_adaptive_tree": _hoeffding_adaptive_tree,
    "linear_regression": _linear_regression,
    "adaptive_random_forest": _adaptive_random_forest,
}


def metric_factories() -> dict[str, Any]:
    from river import metrics, utils

    return {
        "MAE": metrics.MAE(),
        "RMSE": metrics.RMSE(),
        "MAPE": metrics.MAPE(),
        "SMAPE": metrics.SMAPE(),
        "R2": metrics.R2(),
        "RMSLE": metrics.RMSLE(),
        "RollingMAE": utils.Rolling(metrics.MAE, window_size=1000),
        "TimeRollingMAE": utils.TimeRolling(metrics.MAE, period=dt.timedelta(hours=1)),
    }


METRIC_HELP = {
    "MAE": "Mean absolute error in seconds: the typical miss. Lower is better; compare with ~700 s for always guessing the median.",
    "RMSE": "Root mean squared error in seconds: punishes large misses more than MAE.",
    "MAPE": "Mean absolute percentage error: the typical miss relative to the trip's duration, in %.",
    "SMAPE": "Symmetric MAPE in %: 0 is perfect, 200 the worst.",
    "R2": "Share of the variance of travel times the model explains: 1 is perfect, 0 is the mean's level.",
    "RMSLE": "RMSE of log durations: relative error that treats short and long trips alike.",
    "RollingMAE": "MAE over the last 1,000 trips: recent quality, shows drift.",
    "TimeRollingMAE": "MAE over the trips of the last hour of event time.",
}

DOMAIN = Domain(
    name="eta",
    title="Estimated Time of Arrival",
    task="regression",
    topic="estimated_time_of_arrival",
    key_field="driver_id",
    id_field="trip_id",
    target="simulated_actual_travel_time_seconds",
    fields=FIELDS,
    features=features,
    model_factories=MODEL_FACTORIES,
    default_model="hoeffding_adaptive_tree",
    metric_factories=metric_factories,
    main_metrics=("MAE", "RMSE", "R2", "RollingMAE", "MAPE"),
    prediction_fields=PREDICTION_FIELDS,
    prediction_values=prediction_values,
    description="Predicts each trip's travel time from distance, time, weather, driver and vehicle.",
    metric_help=METRIC_HELP,
    headline_fields=("estimated_distance_km",),
)
