"""A domain's features computed on columns: `domain.features(event)` for every row of a lake table at once.

`COLUMNAR_FEATURES` holds one function per domain; tests/functions/test_batch_units.py checks that each equals the
per-event function on the same events, so a batch model sees exactly what the River model sees.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from eventing.domain import Domain


def _tfd_features(frame: pd.DataFrame) -> pd.DataFrame:
    when = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    hour = when.dt.hour
    amount = frame["amount"].astype(float)
    age = frame["account_age_days"].astype(float)
    return pd.DataFrame(
        {
            "amount": amount,
            "log_amount": np.log1p(amount),
            "account_age_days": age,
            "new_account": (age < 30).astype(float),
            "cvv_provided": frame["cvv_provided"].astype(float),
            "billing_address_match": frame["billing_address_match"].astype(float),
            "currency": frame["currency"].astype(str),
            "product_category": frame["product_category"].astype(str),
            "transaction_type": frame["transaction_type"].astype(str),
            "payment_method": frame["payment_method"].astype(str),
            "os": frame["device_info_os"].fillna("unknown").astype(str),
            "browser": frame["device_info_browser"].fillna("unknown").astype(str),
            "hour_of_day": "h" + hour.map("{:02d}".format),
            "night": ((hour < 6) | (hour >= 23)).astype(float),
        },
        index=frame.index,
    )


def _eta_features(frame: pd.DataFrame) -> pd.DataFrame:
    from eventing.domains.eta import CITY_CENTER, DOWNTOWN_KM, KM_PER_DEG_LAT, KM_PER_DEG_LON

    hour = frame["hour_of_day"].astype(int)
    day = frame["day_of_week"].astype(str)
    weekday = ~day.isin(["Saturday", "Sunday"])
    rush = weekday & (hour.between(7, 9) | hour.between(16, 19))
    center_km = np.maximum(
        *(
            np.hypot(
                (frame[f"{end}_lat"].astype(float) - CITY_CENTER[0]) * KM_PER_DEG_LAT,
                (frame[f"{end}_lon"].astype(float) - CITY_CENTER[1]) * KM_PER_DEG_LON,
            )
            for end in ("origin", "destination")
        )
    )
    downtown = center_km < DOWNTOWN_KM
    day_hour = weekday.map({True: "wd", False: "we"}) + hour.map("{:02d}".format)
    return pd.DataFrame(
        {
            "estimated_distance_km": frame["estimated_distance_km"].astype(float),
            "initial_estimated_travel_time_seconds": frame["initial_estimated_travel_time_seconds"].astype(float),
            "temperature_celsius": frame["temperature_celsius"].astype(float),
            "driver_rating": frame["driver_rating"].astype(float),
            "hour_of_day": hour.astype(float),
            "rush_hour": rush.astype(float),
            "weekday": weekday.astype(float),
            "origin_lat": frame["origin_lat"].astype(float),
            "origin_lon": frame["origin_lon"].astype(float),
            "destination_lat": frame["destination_lat"].astype(float),
            "destination_lon": frame["destination_lon"].astype(float),
            "weather": frame["weather"].astype(str),
            "vehicle_type": frame["vehicle_type"].astype(str),
            "day_of_week": day,
            "hour_bucket": "h" + hour.map("{:02d}".format),
            "log_distance_km": np.log(np.maximum(frame["estimated_distance_km"].astype(float), 0.1)),
            "center_km": center_km,
            "downtown": downtown.astype(float),
            "day_hour": day_hour,
            "motorbike_day_hour": day_hour.where(frame["vehicle_type"].astype(str) == "motorbike", "other"),
            "downtown_day_hour": day_hour.where(downtown, "outside"),
        },
        index=frame.index,
    )


def _ecci_features(frame: pd.DataFrame) -> pd.DataFrame:
    kind = frame["event_type"].astype(str)
    out = {
        "log_price": np.log1p(frame["price"].astype(float)),
        "quantity": frame["quantity"].astype(float),
        "log_time_on_page": np.log1p(frame["time_on_page_seconds"].astype(float)),
        "session_event_sequence": frame["session_event_sequence"].astype(float).clip(upper=50),
    }
    for name in ("search", "add_to_cart", "purchase"):
        out[f"is_{name}"] = (kind == name).astype(float)
    out["is_mobile"] = (frame["device_info_device_type"].astype(str) == "mobile").astype(float)
    return pd.DataFrame(out, index=frame.index)


COLUMNAR_FEATURES: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "tfd": _tfd_features,
    "eta": _eta_features,
    "ecci": _ecci_features,
}


def feature_frame(domain: Domain, frame: pd.DataFrame) -> pd.DataFrame:
    """`domain.features(event)` of every row of `frame` (flat lake columns), as columns."""
    return COLUMNAR_FEATURES[domain.name](frame)


def categorical_columns(features: pd.DataFrame) -> list[str]:
    return [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
