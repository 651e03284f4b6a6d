"""E-Commerce Customer Interactions: DBSTREAM clustering of clickstream events into behaviour segments."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from eventing.domain import Domain
from eventing.schema import Field

EVENT_TYPES = ("page_view", "search", "add_to_cart", "remove_from_cart", "purchase", "wishlist", "review")
PRODUCT_CATEGORIES = ("electronics", "fashion", "home", "beauty", "sports", "books", "toys", "grocery")
DEVICE_TYPES = ("desktop", "mobile", "tablet")
BROWSERS = ("Chrome", "Firefox", "Safari", "Edge", "App")
OSES = ("Windows", "macOS", "Linux", "Android", "iOS")

FIELDS: tuple[Field, ...] = (
    Field("event_id", "string", "identifier", "Unique id of the interaction", max_length=128),
    Field(
        "customer_id",
        "string",
        "identifier",
        "Customer; the entity key that orders a customer's events",
        max_length=128,
    ),
    Field("session_id", "string", "identifier", "Browsing session", max_length=128),
    Field("timestamp", "timestamp", "context", "When it happened (ISO 8601, UTC)"),
    Field("event_type", "string", "feature", "What the customer did", choices=EVENT_TYPES),
    Field("product_id", "string", "identifier", "Product involved", required=False, max_length=128),
    Field("product_category", "string", "feature", "Category of the product", choices=PRODUCT_CATEGORIES),
    Field("price", "number", "feature", "Unit price of the product", unit="USD", minimum=0, maximum=50_000),
    Field("quantity", "integer", "feature", "Units involved", minimum=0, maximum=100),
    Field("page_url", "string", "context", "Page where it happened", max_length=2048),
    Field("referrer_url", "string", "context", "Where the customer came from", required=False, max_length=2048),
    Field(
        "device_info",
        "object",
        "feature",
        "Customer's device",
        fields=(
            Field("device_type", "string", "feature", "Kind of device", choices=DEVICE_TYPES),
            Field("browser", "string", "context", "Browser or app", choices=BROWSERS),
            Field("os", "string", "context", "Operating system", choices=OSES),
        ),
    ),
    Field(
        "location",
        "object",
        "context",
        "Customer's approximate location",
        fields=(
            Field("lat", "number", "context", "Latitude", unit="degrees", minimum=-90, maximum=90),
            Field("lon", "number", "context", "Longitude", unit="degrees", minimum=-180, maximum=180),
        ),
    ),
    Field("time_on_page_seconds", "number", "feature", "Time spent on the page", unit="s", minimum=0, maximum=7_200),
    Field("search_query", "string", "context", "Text searched, for search events", required=False, max_length=512),
    Field(
        "session_event_sequence", "integer", "feature", "Position of the event in its session", minimum=1, maximum=500
    ),
)


PREDICTION_FIELDS: tuple[Field, ...] = (
    Field(
        "cluster",
        "integer",
        "prediction",
        "The behaviour segment (cluster id) the model puts the interaction in; null before it has clusters",
        nullable=True,
    ),
    Field(
        "cluster_description",
        "string",
        "prediction",
        "What the interactions of that cluster mostly look like",
        max_length=2048,
    ),
)


def prediction_values(cluster: int | None, description: str) -> dict[str, Any]:
    """The reply's prediction fields from the model's cluster and the profile of that cluster."""
    return {"cluster": cluster, "cluster_description": description}


def features(event: Mapping[str, Any]) -> dict[str, float]:
    """Numeric River features of a clean interaction: DBSTREAM clusters on distances, so categories become 0/1."""
    out: dict[str, float] = {
        "log_price": math.log1p(event["price"]),
        "quantity": float(event["quantity"]),
        "log_time_on_page": math.log1p(event["time_on_page_seconds"]),
        "session_event_sequence": float(min(event["session_event_sequence"], 50)),
    }
    for kind in ("search", "add_to_cart", "purchase"):
        out[f"is_{kind}"] = float(event["event_type"] == kind)
    out["is_mobile"] = float(event["device_info"]["device_type"] == "mobile")
    return out


# Default: DBSTREAM with a wider clustering threshold and faster fading, measured on this machine kind
# (bench/models.py): ARI .987 against the true segments with 9 micro-clusters at 18-29k
# events/s and 3 KB, against ARI .970 and 24 micro-clusters (slower predictions) for the defaults.
# River is imported inside the factories: producers, the router and the CLI read these declarations without it.
def _dbstream() -> Any:
    from river import cluster, preprocessing

    return preprocessing.StandardScaler() | cluster.DBSTREAM(
        clustering_threshold=1.5, fading_factor=0.05, cleanup_interval=4, intersection_factor=0.5
    )


def _dbstream_default() -> Any:
    from river import cluster, preprocessing

    return preprocessing.StandardScaler() | cluster.DBSTREAM()


def _kmeans() -> Any:
    from river import cluster, preprocessing

    return preprocessing.StandardScaler() | cluster.KMeans(n_clusters=5, seed=42)


MODEL_FACTORIES = {
    "dbstream": _dbstream,
    "dbstream_default": _dbstream_default,
    "kmeans": _kmeans,
}


def metric_factories() -> dict[str, Any]:
    from river import metrics, utils

    return {
        "Silhouette": metrics.Silhouette(),
        "RollingSilhouette": utils.Rolling(metrics.Silhouette, window_size=1000),
    }


# Features and their Redis-kept per-cluster value distributions (dashboard "Cluster behaviour").
PROFILE_FIELDS = ("event_type", "product_category", "device_info.device_type", "price", "time_on_page_seconds")

METRIC_HELP = {
    "Silhouette": "River's silhouette: mean ratio of the distance to the own cluster centre over the distance to the nearest other centre. Lower is better (0 = tight, well separated).",
    "RollingSilhouette": "Silhouette over the last 1,000 interactions.",
    "n_clusters": "Macro-clusters DBSTREAM currently finds.",
    "n_micro_clusters": "Micro-clusters (dense regions) behind the macro-clusters.",
}

DOMAIN = Domain(
    name="ecci",
    title="E-Commerce Customer Interactions",
    task="clustering",
    topic="e_commerce_customer_interactions",
    key_field="customer_id",
    id_field="event_id",
    target=None,
    fields=FIELDS,
    features=features,
    model_factories=MODEL_FACTORIES,
    default_model="dbstream",
    metric_factories=metric_factories,
    main_metrics=("Silhouette", "RollingSilhouette"),
    prediction_fields=PREDICTION_FIELDS,
    prediction_values=prediction_values,
    description="Groups shoppers' interactions into behaviour segments as they happen, with DBSTREAM.",
    metric_help=METRIC_HELP,
    headline_fields=("event_type", "product_category"),
    profile_fields=PROFILE_FIELDS,
)
