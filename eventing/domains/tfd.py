"""Transaction Fraud Detection: binary classification of card transactions (target is_fraud)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from eventing.domain import DECISION_THRESHOLD, Domain
from eventing.schema import Field

CURRENCIES = ("USD", "EUR", "GBP", "BRL", "JPY", "CAD")
PRODUCT_CATEGORIES = (
    "electronics",
    "groceries",
    "clothing",
    "travel",
    "gaming",
    "home",
    "health",
    "jewelry",
    "gift_cards",
    "restaurants",
)
TRANSACTION_TYPES = ("purchase", "withdrawal", "transfer", "refund", "subscription")
PAYMENT_METHODS = ("credit_card", "debit_card", "paypal", "bank_transfer", "crypto", "apple_pay")
OSES = ("Windows", "macOS", "Linux", "Android", "iOS")
BROWSERS = ("Chrome", "Firefox", "Safari", "Edge", "Opera", "App")

FIELDS: tuple[Field, ...] = (
    Field("transaction_id", "string", "identifier", "Unique id of the transaction", max_length=128),
    Field(
        "user_id", "string", "identifier", "Card holder; the entity key that orders this user's events", max_length=128
    ),
    Field("timestamp", "timestamp", "context", "When the transaction happened (ISO 8601, UTC)"),
    Field("amount", "number", "feature", "Transaction amount", unit="currency units", minimum=0.01, maximum=100_000),
    Field("currency", "string", "feature", "ISO 4217 currency code", choices=CURRENCIES),
    Field("merchant_id", "string", "identifier", "Merchant receiving the payment", max_length=128),
    Field("product_category", "string", "feature", "What was bought", choices=PRODUCT_CATEGORIES),
    Field("transaction_type", "string", "feature", "Kind of transaction", choices=TRANSACTION_TYPES),
    Field("payment_method", "string", "feature", "How it was paid", choices=PAYMENT_METHODS),
    Field(
        "location",
        "object",
        "context",
        "Where the card was used",
        fields=(
            Field("lat", "number", "context", "Latitude", unit="degrees", minimum=-90, maximum=90),
            Field("lon", "number", "context", "Longitude", unit="degrees", minimum=-180, maximum=180),
        ),
    ),
    Field("ip_address", "string", "context", "Client IP address", max_length=45),
    Field(
        "device_info",
        "object",
        "feature",
        "Client device",
        fields=(
            Field("os", "string", "feature", "Operating system", choices=OSES),
            Field("browser", "string", "feature", "Browser or app", choices=BROWSERS),
        ),
    ),
    Field("user_agent", "string", "context", "HTTP user agent string", required=False, max_length=1024),
    Field(
        "account_age_days", "integer", "feature", "Age of the user's account", unit="days", minimum=0, maximum=20_000
    ),
    Field("cvv_provided", "boolean", "feature", "Whether the card's CVV was given"),
    Field("billing_address_match", "boolean", "feature", "Whether the billing address matched the card's"),
    Field("is_fraud", "boolean", "target", "Ground truth: the transaction was fraudulent"),
)


# Risk levels of a fraud probability: (level, from, below); the last one includes 1.
RISK_LEVELS: tuple[tuple[str, float, float], ...] = (("low", 0.0, 0.3), ("medium", 0.3, 0.7), ("high", 0.7, 1.0))


def risk_level(probability: float) -> str:
    """low < 0.3 <= medium < 0.7 <= high.

    >>> [risk_level(p) for p in (0.1, 0.3, 0.69, 0.7, 1.0)]
    ['low', 'medium', 'medium', 'high', 'high']
    """
    for level, _low, below in RISK_LEVELS[:-1]:
        if probability < below:
            return level
    return RISK_LEVELS[-1][0]


PREDICTION_FIELDS: tuple[Field, ...] = (
    Field(
        "fraud_probability", "number", "prediction", "Probability that the transaction is a fraud", minimum=0, maximum=1
    ),
    Field("is_fraud", "boolean", "prediction", f"The verdict: fraud_probability >= {DECISION_THRESHOLD:g}"),
    Field(
        "risk_level",
        "string",
        "prediction",
        "Risk band of fraud_probability: " + ", ".join(f"{lv} from {lo:g}" for lv, lo, _ in RISK_LEVELS),
        choices=tuple(level for level, _, _ in RISK_LEVELS),
    ),
)


def prediction_values(probability: float) -> dict[str, Any]:
    """The reply's prediction fields from the model's fraud probability."""
    return {
        "fraud_probability": probability,
        "is_fraud": probability >= DECISION_THRESHOLD,
        "risk_level": risk_level(probability),
    }


def features(event: Mapping[str, Any]) -> dict[str, Any]:
    """River features of a clean transaction (no identifiers, no target)."""
    when = datetime.fromisoformat(event["timestamp"]) if "timestamp" in event else None
    device = event.get("device_info", {})
    return {
        "amount": event["amount"],
        "log_amount": math.log1p(event["amount"]),
        "account_age_days": event["account_age_days"],
        "new_account": float(event["account_age_days"] < 30),
        "cvv_provided": float(event["cvv_provided"]),
        "billing_address_match": float(event["billing_address_match"]),
        "currency": event["currency"],
        "product_category": event["product_category"],
        "transaction_type": event["transaction_type"],
        "payment_method": event["payment_method"],
        "os": device.get("os", "unknown"),
        "browser": device.get("browser", "unknown"),
        "hour_of_day": f"h{when.hour:02d}" if when else "unknown",
        "night": float(when is not None and (when.hour < 6 or when.hour >= 23)),
    }


CATEGORICAL = ["currency", "product_category", "transaction_type", "payment_method", "os", "browser", "hour_of_day"]


def _linear_pipeline() -> Any:
    from river import compose, linear_model, optim, preprocessing

    numeric = compose.Select(
        "amount", "log_amount", "account_age_days", "new_account", "cvv_provided", "billing_address_match", "night"
    )
    return (
        (numeric | preprocessing.StandardScaler()) + (compose.Select(*CATEGORICAL) | preprocessing.OneHotEncoder())
    ) | linear_model.LogisticRegression(optimizer=optim.SGD(0.05))


# Default: logistic regression inside a random under-sampler. Measured on this machine kind
# (bench/models.py): ROC AUC .888 at 13-25k events/s with 8 KB of state, against .815 at
# ~216 events/s and 82 MB for a 10-tree adaptive random forest. The forest costs 60x the time for worse quality.
# River is imported inside the factories: producers, the router and the CLI read these declarations without
# paying River's import (~3 CPU-s and ~150 MB per process, see ADR 0001).
def _logreg_rus() -> Any:
    from river import imblearn

    return imblearn.RandomUnderSampler(_linear_pipeline(), desired_dist={False: 0.8, True: 0.2}, seed=42)


def _hoeffding_adaptive_tree() -> Any:
    from river import compose, tree

    return compose.Select(
        "amount", "account_age_days", "cvv_provided", "billing_address_match", "night", *CATEGORICAL
    ) | tree.HoeffdingAdaptiveTreeClassifier(seed=42)


def _adaptive_random_forest() -> Any:
    from river import forest

    return forest.ARFClassifier(n_models=10, seed=42)


MODEL_FACTORIES = {
    "logreg_rus": _logreg_rus,
    "logreg": _linear_pipeline,
    "hoeffding_adaptive_tree": _hoeffding_adaptive_tree,
    "adaptive_random_forest": _adaptive_random_forest,
}


def metric_factories() -> dict[str, Any]:
    from river import metrics

    return {
        "Accuracy": metrics.Accuracy(),
        "Precision": metrics.Precision(),
        "Recall": metrics.Recall(),
        "F1": metrics.F1(),
        "FBeta(2)": metrics.FBeta(beta=2),
        "BalancedAccuracy": metrics.BalancedAccuracy(),
        "MCC": metrics.MCC(),
        "GeometricMean": metrics.GeometricMean(),
        "CohenKappa": metrics.CohenKappa(),
        "Jaccard": metrics.Jaccard(),
        "ROCAUC": metrics.ROCAUC(),
        "RollingROCAUC": metrics.RollingROCAUC(window_size=1000),
        "LogLoss": metrics.LogLoss(),
        "ConfusionMatrix": metrics.ConfusionMatrix(),
        "ClassificationReport": metrics.ClassificationReport(),
    }


METRIC_HELP = {
    "ROCAUC": "Probability that a random fraud scores above a random legitimate transaction. 0.5 is chance, 1 is perfect; above 0.85 is good here.",
    "RollingROCAUC": "ROC AUC over the last 1,000 labelled transactions: shows recent quality and drift.",
    "F1": "Harmonic mean of precision and recall on the fraud class (threshold 0.5). 0 to 1; fraud is rare, so 0.3-0.5 is good.",
    "FBeta(2)": "Like F1 but recall counts twice as much: missing a fraud costs more than a false alarm.",
    "Precision": "Of the transactions flagged as fraud, the share that were fraud. 0 to 1.",
    "Recall": "Of the frauds, the share that were flagged. 0 to 1.",
    "Accuracy": "Share of correct labels. Misleading with ~2% fraud: always saying 'legit' scores 0.98.",
    "BalancedAccuracy": "Mean recall of both classes: 0.5 is chance, 1 is perfect. Robust to the class imbalance.",
    "MCC": "Matthews correlation between predictions and truth: -1 to 1, 0 is chance. Robust to imbalance.",
    "GeometricMean": "Geometric mean of the recalls of both classes: 0 when one class is never found.",
    "CohenKappa": "Agreement beyond chance: 0 is chance, 1 is perfect.",
    "Jaccard": "Overlap of predicted and true frauds: 0 to 1.",
    "LogLoss": "Cross-entropy of the fraud probabilities: lower is better, 0 is perfect; ~0.1 is the no-skill level at 2% fraud.",
}

DOMAIN = Domain(
    name="tfd",
    title="Transaction Fraud Detection",
    task="classification",
    topic="transaction_fraud_detection",
    key_field="user_id",
    id_field="transaction_id",
    target="is_fraud",
    fields=FIELDS,
    features=features,
    model_factories=MODEL_FACTORIES,
    default_model="logreg_rus",
    metric_factories=metric_factories,
    main_metrics=("ROCAUC", "RollingROCAUC", "F1", "Precision", "Recall", "LogLoss"),
    prediction_fields=PREDICTION_FIELDS,
    prediction_values=prediction_values,
    description="Scores each card transaction's probability of fraud and learns from every labelled one.",
    metric_help=METRIC_HELP,
    headline_fields=("amount",),
)
