"""Seeded event streams for the function tests and benchmarks, built from the domain schemas.

Uses the producers' generators when they exist (producers.generators.<domain>), else a small generator here with
enough signal for the models to learn something (fraud from amount/account age/CVV, travel time from distance
and weather, shopper segments). Same seed, same stream.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from eventing.domains import get_domain
from eventing.domains import tfd as tfd_module

START = datetime(2026, 1, 5, tzinfo=UTC)


def tfd_events(seed: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    t = START
    i = 0
    while True:
        i += 1
        t += timedelta(seconds=rng.expovariate(1 / 20))
        age = int(rng.expovariate(1 / 600)) % 20_000
        amount = round(min(rng.lognormvariate(3.5, 1.2), 99_999.0), 2)
        cvv = rng.random() > 0.08
        billing = rng.random() > 0.1
        method = rng.choice(tfd_module.PAYMENT_METHODS)
        score = -4.2 + 1.2 * (age < 30) + 0.9 * (not cvv) + 0.9 * (not billing) + 0.5 * math.log1p(amount) / 5 \
            + 0.8 * (method == "crypto") + 0.6 * (t.hour < 6)
        fraud = rng.random() < 1 / (1 + math.exp(-score))
        yield {
            "transaction_id": f"tx-{seed}-{i}", "user_id": f"u{rng.randrange(500)}", "timestamp": t.isoformat(),
            "amount": amount, "currency": rng.choice(tfd_module.CURRENCIES), "merchant_id": f"m{rng.randrange(80)}",
            "product_category": rng.choice(tfd_module.PRODUCT_CATEGORIES),
            "transaction_type": rng.choice(tfd_module.TRANSACTION_TYPES), "payment_method": method,
            "location": {"lat": rng.uniform(-40, 60), "lon": rng.uniform(-120, 140)},
            "ip_address": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
            "device_info": {"os": rng.choice(tfd_module.OSES), "browser": rng.choice(tfd_module.BROWSERS)},
            "account_age_days": age, "cvv_provided": cvv, "billing_address_match": billing, "is_fraud": fraud,
        }


def eta_events(seed: int) -> Iterator[dict[str, Any]]:
    from eventing.domains import eta as eta_module

    rng = random.Random(seed)
    t = START
    i = 0
    while True:
        i += 1
        t += timedelta(seconds=rng.expovariate(1 / 30))
        dist = round(rng.uniform(0.5, 40), 2)
        weather = rng.choice(eta_module.WEATHER)
        slow = {"clear": 1.0, "clouds": 1.05, "rain": 1.2, "heavy_rain": 1.45, "snow": 1.7, "fog": 1.3}[weather]
        rush = 1.35 if t.hour in (7, 8, 9, 16, 17, 18) else 1.0
        naive = dist * 90
        actual = max(60.0, naive * slow * rush * rng.uniform(0.85, 1.2) + rng.gauss(0, 60))
        yield {
            "trip_id": f"trip-{seed}-{i}", "driver_id": f"d{rng.randrange(200)}", "vehicle_id": f"v{rng.randrange(200)}",
            "timestamp": t.isoformat(),
            "origin": {"lat": 40.7 + rng.uniform(-0.2, 0.2), "lon": -74.0 + rng.uniform(-0.2, 0.2)},
            "destination": {"lat": 40.7 + rng.uniform(-0.2, 0.2), "lon": -74.0 + rng.uniform(-0.2, 0.2)},
            "estimated_distance_km": dist, "weather": weather, "temperature_celsius": round(rng.uniform(-5, 35), 1),
            "day_of_week": t.strftime("%A"), "hour_of_day": t.hour, "driver_rating": round(rng.uniform(3.5, 5), 2),
            "vehicle_type": rng.choice(eta_module.VEHICLE_TYPES), "initial_estimated_travel_time_seconds": round(naive, 1),
            "simulated_actual_travel_time_seconds": round(actual, 1),
        }


SEGMENTS = (  # (event types, price scale, time on page, quantity, mobile share)
    (("page_view", "search"), 30.0, 20.0, 1, 0.8),
    (("add_to_cart", "purchase"), 300.0, 90.0, 2, 0.3),
    (("page_view", "review", "wishlist"), 80.0, 240.0, 1, 0.5),
)


def ecci_events(seed: int) -> Iterator[dict[str, Any]]:
    from eventing.domains import ecci as ecci_module

    rng = random.Random(seed)
    t = START
    i = 0
    while True:
        i += 1
        t += timedelta(seconds=rng.expovariate(1 / 5))
        kinds, price, dwell, qty, mobile = rng.choice(SEGMENTS)
        yield {
            "event_id": f"ev-{seed}-{i}", "customer_id": f"c{rng.randrange(300)}", "session_id": f"s{rng.randrange(900)}",
            "timestamp": t.isoformat(), "event_type": rng.choice(kinds), "product_id": f"p{rng.randrange(1000)}",
            "product_category": rng.choice(ecci_module.PRODUCT_CATEGORIES),
            "price": round(min(rng.lognormvariate(math.log(price), 0.3), 49_999), 2), "quantity": qty,
            "page_url": "/p", "device_info": {
                "device_type": "mobile" if rng.random() < mobile else "desktop", "browser": "Chrome", "os": "Android",
            },
            "location": {"lat": 10.0, "lon": 10.0}, "time_on_page_seconds": round(min(rng.expovariate(1 / dwell), 7000), 1),
            "session_event_sequence": rng.randrange(1, 20),
        }


GENERATORS = {"tfd": tfd_events, "eta": eta_events, "ecci": ecci_events}


def events(domain: str, n: int, seed: int = 7) -> list[dict[str, Any]]:
    """`n` clean events of `domain` (validated by the domain's schema)."""
    d = get_domain(domain)
    out = []
    for raw in GENERATORS[domain](seed):
        out.append(d.validate(raw))
        if len(out) == n:
            return out
    return out
