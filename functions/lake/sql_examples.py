"""Example queries over the lake, per domain: the dashboard's SQL page offers them, the assistant is told them.

Column names come from the domain declarations (eventing/domains/), flattened as the lake writes them
(`device_info.device_type` -> `device_info_device_type`): `column()` refuses a field a domain does not declare and
`choice()` a value it does not allow, so a renamed field breaks this module at import, not a query on screen.

    >>> column("eta", "origin.lat"), choice("ecci", "event_type", "purchase")
    ('origin_lat', "'purchase'")
    >>> sorted({e.domain for e in EXAMPLES})
    ['ecci', 'eta', 'tfd']
"""

from __future__ import annotations

from dataclasses import dataclass

from eventing.domains import get_domain
from functions.lake.tables import table_for


def column(domain: str, path: str) -> str:
    """The lake column of a declared field: its path with `.` -> `_`."""
    fields = dict(get_domain(domain).leaf_fields())
    if path not in fields:
        raise KeyError(f"{domain} declares no field {path!r}")
    return path.replace(".", "_")


def choice(domain: str, path: str, value: str) -> str:
    """A SQL string literal of one of a field's declared choices."""
    declared = dict(get_domain(domain).leaf_fields())[path].choices or ()
    if value not in declared:
        raise ValueError(f"{domain}.{path} has no choice {value!r}: {', '.join(declared)}")
    return f"'{value}'"


@dataclass(frozen=True)
class Example:
    domain: str
    title: str
    sql: str


def _examples() -> list[Example]:
    tx, trips, ci = table_for("tfd"), table_for("eta"), table_for("ecci")
    fraud = f"avg(CAST({column('tfd', 'is_fraud')} AS DOUBLE))"
    minutes = f"avg({column('eta', 'simulated_actual_travel_time_seconds')}) / 60"
    return [
        Example(
            "tfd",
            "Fraud rate by product category",
            f"SELECT {column('tfd', 'product_category')} AS category, count(*) AS transactions,\n"
            f"       round({fraud}, 4) AS fraud_rate\nFROM {tx}\nGROUP BY 1\nORDER BY fraud_rate DESC",
        ),
        Example(
            "tfd",
            "Fraud rate by hour of day",
            f'SELECT hour(CAST("{column("tfd", "timestamp")}" AS TIMESTAMP)) AS hour, count(*) AS transactions,\n'
            f"       round({fraud}, 4) AS fraud_rate\nFROM {tx}\nGROUP BY 1\nORDER BY 1",
        ),
        Example(
            "eta",
            "Average trip time by weather",
            f"SELECT {column('eta', 'weather')} AS weather, count(*) AS trips, round({minutes}, 1) AS avg_minutes\n"
            f"FROM {trips}\nGROUP BY 1\nORDER BY avg_minutes DESC",
        ),
        Example(
            "eta",
            "Average trip time by vehicle type",
            f"SELECT {column('eta', 'vehicle_type')} AS vehicle_type, count(*) AS trips,\n"
            f"       round({minutes}, 1) AS avg_minutes,\n"
            f"       round(avg({column('eta', 'estimated_distance_km')}), 1) AS avg_km\n"
            f"FROM {trips}\nGROUP BY 1\nORDER BY avg_minutes DESC",
        ),
        Example(
            "ecci",
            "Top customers by spend",
            f"SELECT {column('ecci', 'customer_id')} AS customer, count(*) AS purchases,\n"
            f"       round(sum({column('ecci', 'price')} * {column('ecci', 'quantity')}), 2) AS spend\n"
            f"FROM {ci}\nWHERE {column('ecci', 'event_type')} = {choice('ecci', 'event_type', 'purchase')}\n"
            "GROUP BY 1\nORDER BY spend DESC\nLIMIT 10",
        ),
        Example(
            "ecci",
            "Interactions per event type",
            f"SELECT {column('ecci', 'event_type')} AS event_type, count(*) AS interactions,\n"
            f"       count(DISTINCT {column('ecci', 'customer_id')}) AS customers\nFROM {ci}\n"
            "GROUP BY 1\nORDER BY interactions DESC",
        ),
        Example(
            "ecci",
            "Interactions per device type",
            f"SELECT {column('ecci', 'device_info.device_type')} AS device_type, count(*) AS interactions,\n"
            f"       round(avg({column('ecci', 'time_on_page_seconds')}), 1) AS avg_seconds_on_page\nFROM {ci}\n"
            "GROUP BY 1\nORDER BY interactions DESC",
        ),
    ]


EXAMPLES: list[Example] = _examples()
