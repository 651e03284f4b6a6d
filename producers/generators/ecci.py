"""Shop clickstream: customers of latent behaviour segments browse in sessions that start, continue and end.

Each customer belongs to one hidden segment. The segment sets what a clustering model sees in every event
(`eventing.domains.ecci.features`): the price level of the products looked at, the units put in the cart,
the time spent on a page, how long sessions last, which actions are frequent, and the device:

| segment        | price    | units | time on page | session length | device  | frequent actions       |
|----------------|----------|-------|--------------|----------------|---------|------------------------|
| bargain_hunter | ~$18     | 1-3   | ~22 s        | ~12 events     | mobile  | views, searches        |
| researcher     | ~$320    | 1     | ~4 min       | ~10 events     | desktop | searches, views        |
| impulse_buyer  | ~$60     | 1-2   | ~6 s         | ~4 events      | mobile  | add to cart, purchase  |
| premium        | ~$1,600  | 1     | ~90 s        | ~6 events      | desktop | views, purchase        |
| bulk_buyer     | ~$6      | 6-24  | ~45 s        | ~8 events      | desktop | add to cart, purchase  |

The segment is recorded in `GeneratedEvent.truth` for evaluation (e.g. ARI of the clusters against it) and is
never a field. Sessions arrive as a Poisson process that follows the hour of day; a session's next event comes
when the customer leaves the current page (so `time_on_page_seconds` is the gap to the next event), and it
ends with a per-segment probability after each event (more likely after a purchase), at most 60 events.
`drift_at` starts a sale: prices drop by 40% and a new segment (sale_hunter, resellers: expensive products,
30-60 units, 3-second pages, mostly mobile; 40% of new sessions) appears, far enough from the known segments for the clustering
model's drift detector to see it (docs/adr/0071-drift-detection-on-producer-drift.md).
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventing.domains.ecci import DOMAIN, EVENT_TYPES, PRODUCT_CATEGORIES
from producers.generators.base import GeneratedEvent, StreamGenerator, hour_of, iso
from producers.generators.categorical import Categorical

SHOP = "https://shop.coelho.example"
MAX_SESSION_EVENTS = 60


@dataclass(frozen=True, eq=False)
class Segment:
    name: str
    share: float
    mobile: float  # P(the customer's device is a phone)
    price: float  # typical price looked at, USD
    time_s: float  # typical time on a page
    units: tuple[int, int]  # units put in the cart, uniform in this range
    session_events: float  # mean session length in events
    actions: dict[str, float]  # relative odds of the next action
    categories: dict[str, float]

    def __post_init__(self) -> None:
        assert set(self.actions) <= set(EVENT_TYPES) and set(self.categories) <= set(PRODUCT_CATEGORIES)


SEGMENTS = (
    Segment(
        "bargain_hunter",
        0.28,
        0.95,
        18,
        22,
        (1, 3),
        12,
        {
            "page_view": 6,
            "search": 3,
            "add_to_cart": 1.2,
            "remove_from_cart": 0.4,
            "purchase": 0.5,
            "wishlist": 0.8,
            "review": 0.1,
        },
        {"fashion": 3, "home": 2, "toys": 2, "beauty": 2, "sports": 1},
    ),
    Segment(
        "researcher",
        0.20,
        0.05,
        320,
        240,
        (1, 1),
        10,
        {
            "page_view": 5,
            "search": 4,
            "add_to_cart": 0.5,
            "remove_from_cart": 0.2,
            "purchase": 0.3,
            "wishlist": 1,
            "review": 0.6,
        },
        {"electronics": 4, "books": 2, "sports": 2, "home": 1},
    ),
    Segment(
        "impulse_buyer",
        0.22,
        0.97,
        60,
        6,
        (1, 2),
        4,
        {"page_view": 3, "search": 0.4, "add_to_cart": 3, "remove_from_cart": 0.1, "purchase": 2.5, "wishlist": 0.1},
        {"fashion": 3, "beauty": 3, "toys": 1, "electronics": 1},
    ),
    Segment(
        "premium",
        0.12,
        0.08,
        1600,
        90,
        (1, 1),
        6,
        {
            "page_view": 4,
            "search": 1,
            "add_to_cart": 1.5,
            "remove_from_cart": 0.3,
            "purchase": 1.2,
            "wishlist": 0.6,
            "review": 0.3,
        },
        {"electronics": 3, "fashion": 2, "home": 2, "sports": 1},
    ),
    Segment(
        "bulk_buyer",
        0.18,
        0.1,
        6,
        45,
        (6, 24),
        8,
        {"page_view": 3, "search": 1.5, "add_to_cart": 3, "remove_from_cart": 0.5, "purchase": 1.5, "review": 0.1},
        {"grocery": 5, "home": 1.5, "beauty": 1},
    ),
)
SALE_HUNTER = Segment(
    "sale_hunter",
    0.4,
    0.9,
    2500,
    3,
    (30, 60),
    7,
    {"page_view": 3, "search": 1, "add_to_cart": 3, "remove_from_cart": 1, "purchase": 1.5, "wishlist": 1},
    {"electronics": 2, "fashion": 2, "home": 2, "toys": 1, "sports": 1},
)
SALE_DISCOUNT = 0.6
SEGMENT = Categorical({s: s.share for s in SEGMENTS})
SEGMENT_IN_SALE = Categorical(
    {s: s.share * (1 - SALE_HUNTER.share) for s in SEGMENTS} | {SALE_HUNTER: SALE_HUNTER.share}
)

DEVICES = {
    "mobile": Categorical({("Android", "Chrome"): 4, ("Android", "App"): 2, ("iOS", "Safari"): 4, ("iOS", "App"): 2}),
    "tablet": Categorical({("iOS", "Safari"): 3, ("Android", "Chrome"): 2}),
    "desktop": Categorical(
        {
            ("Windows", "Chrome"): 5,
            ("Windows", "Edge"): 2,
            ("macOS", "Safari"): 3,
            ("macOS", "Chrome"): 2,
            ("Linux", "Firefox"): 1,
            ("Windows", "Firefox"): 1,
        }
    ),
}
CITIES = Categorical(
    {
        (40.7128, -74.006): 5,
        (34.0522, -118.2437): 4,
        (41.8781, -87.6298): 3,
        (29.7604, -95.3698): 3,
        (47.6062, -122.3321): 2,
        (25.7617, -80.1918): 2,
        (39.7392, -104.9903): 1,
    }
)
REFERRERS = Categorical(
    {
        "https://www.google.com/": 5,
        "https://www.facebook.com/": 2,
        "https://www.instagram.com/": 2,
        "https://mail.coelho.example/newsletter": 1,
        "": 3,
    }
)
QUERIES = {
    "electronics": ("wireless earbuds", "4k tv", "laptop", "phone case", "smartwatch", "usb-c charger"),
    "fashion": ("summer dress", "running shoes", "denim jacket", "sunglasses", "wool scarf"),
    "home": ("coffee maker", "bed sheets", "desk lamp", "storage boxes", "air fryer"),
    "beauty": ("moisturizer", "lipstick", "shampoo", "sunscreen", "perfume"),
    "sports": ("yoga mat", "dumbbells", "bike helmet", "tennis racket", "hiking boots"),
    "books": ("mystery novel", "cookbook", "python programming", "history of rome", "children's books"),
    "toys": ("lego set", "board game", "plush toy", "puzzle 1000", "rc car"),
    "grocery": ("coffee beans", "olive oil", "pasta", "rice 5kg", "sparkling water"),
}

SESSIONS_PER_HOUR = 800  # arriving sessions per simulated hour, on average over the day
INTENSITY = tuple(0.25 if h < 6 else 1.5 if 18 <= h <= 22 else 1.0 for h in range(24))
_norm = sum(INTENSITY) / 24
INTENSITY = tuple(i / _norm for i in INTENSITY)


@dataclass(slots=True)
class Customer:
    customer_id: str
    segment: Segment
    device_type: str
    os: str
    browser: str
    lat: float
    lon: float


@dataclass(slots=True)
class Session:
    session_id: str
    customer: Customer
    segment: Segment
    events: int = 0
    cart: list[tuple[str, str, float, int]] = field(default_factory=list)  # (product_id, category, price, units)
    page_url: str = ""


class Catalog:
    """Products per category with fixed prices; `near(category, price)` finds the product closest in price."""

    def __init__(self, rng: Any, per_category: int = 400) -> None:
        self.prices: dict[str, list[float]] = {}
        self.ids: dict[str, list[str]] = {}
        for category in PRODUCT_CATEGORIES:
            prices = sorted(round(math.exp(rng.uniform(math.log(1.5), math.log(8000))), 2) for _ in range(per_category))
            self.prices[category] = prices
            self.ids[category] = [f"prod-{category[:4]}-{i:04d}" for i in range(per_category)]

    def near(self, category: str, price: float) -> tuple[str, float]:
        prices = self.prices[category]
        i = min(bisect(prices, price), len(prices) - 1)
        if i and price - prices[i - 1] < prices[i] - price:
            i -= 1
        return self.ids[category][i], prices[i]


class InteractionGenerator(StreamGenerator):
    """Interleaved shopping sessions of returning customers; see the module docstring."""

    domain = DOMAIN

    def __init__(
        self,
        seed: int | None = None,
        start: datetime | str | float | None = None,
        drift_at: int | None = None,
        customers: int = 3000,
    ) -> None:
        super().__init__(seed, start, drift_at)
        self.catalog = Catalog(self.rng)
        self.customers: list[Customer] = [self._new_customer(SEGMENT.draw(self.rng)) for _ in range(customers)]
        self.categories = {s.name: Categorical(s.categories) for s in (*SEGMENTS, SALE_HUNTER)}
        self.actions = {s.name: Categorical(s.actions) for s in (*SEGMENTS, SALE_HUNTER)}
        self.browsing = {
            s.name: Categorical({a: w for a, w in s.actions.items() if a not in ("purchase", "remove_from_cart")})
            for s in (*SEGMENTS, SALE_HUNTER)
        }
        self.sessions: list[tuple[float, int, Session]] = []  # heap of (time of the next event, tie-break, session)
        self.started = 0
        self.pushes = 0
        self.next_arrival = self._arrival_after(self.now)

    def _new_customer(self, segment: Segment) -> Customer:
        rng = self.rng
        device_type = "mobile" if rng.random() < segment.mobile else ("tablet" if rng.random() < 0.15 else "desktop")
        os, browser = DEVICES[device_type].draw(rng)
        lat, lon = CITIES.draw(rng)
        return Customer(
            f"customer-{rng.getrandbits(40):010x}",
            segment,
            device_type,
            os,
            browser,
            round(lat + rng.gauss(0, 0.1), 4),
            round(lon + rng.gauss(0, 0.1), 4),
        )

    def _arrival_after(self, t: float) -> float:
        return t + self.rng.expovariate(SESSIONS_PER_HOUR / 3600 * INTENSITY[hour_of(t)])

    def _start_session(self) -> Session:
        rng = self.rng
        if self.drifted and rng.random() < SALE_HUNTER.share:
            customer = self._new_customer(SALE_HUNTER)
        elif rng.random() < 0.1:  # a new customer
            customer = self._new_customer((SEGMENT_IN_SALE if self.drifted else SEGMENT).draw(rng))
            self.customers.append(customer)
        else:
            customer = self.customers[int(len(self.customers) * rng.random() ** 1.3)]
        self.started += 1
        return Session(self.new_id(), customer, customer.segment)

    def _interaction(self, session: Session, t: float) -> dict[str, Any]:
        rng = self.rng
        segment = session.segment
        session.events += 1
        if session.events == 1:
            action = (
                "search"
                if rng.random() < segment.actions.get("search", 0) / sum(segment.actions.values()) * 2
                else "page_view"
            )
        elif session.cart:
            action = self.actions[segment.name].draw(rng)
        else:
            action = self.browsing[segment.name].draw(rng)
        discount = SALE_DISCOUNT if self.drifted else 1.0
        units = 1
        search_query = None
        if action in ("purchase", "remove_from_cart"):
            product_id, category, price, units = session.cart[-1] if action == "remove_from_cart" else session.cart[0]
            if action == "remove_from_cart":
                session.cart.pop()
            url = f"{SHOP}/cart" if action == "remove_from_cart" else f"{SHOP}/checkout/complete"
        else:
            category = self.categories[segment.name].draw(rng)
            target = segment.price * discount * math.exp(rng.gauss(0, 0.22))
            product_id, price = self.catalog.near(category, target)
            price = round(price * discount, 2)
            if action == "search":
                search_query = rng.choice(QUERIES[category])
                url = f"{SHOP}/search?q={search_query.replace(' ', '+')}"
            else:
                url = f"{SHOP}/{category}/{product_id}"
            if action == "add_to_cart":
                units = rng.randint(*segment.units)
                session.cart.append((product_id, category, price, units))
        referrer = REFERRERS.draw(rng) if session.events == 1 else session.page_url
        session.page_url = url
        customer = session.customer
        data: dict[str, Any] = {
            "event_id": self.new_id(),
            "customer_id": customer.customer_id,
            "session_id": session.session_id,
            "timestamp": iso(t),
            "event_type": action,
            "product_id": product_id,
            "product_category": category,
            "price": price,
            "quantity": units,
            "page_url": url,
            "device_info": {"device_type": customer.device_type, "browser": customer.browser, "os": customer.os},
            "location": {"lat": customer.lat, "lon": customer.lon},
            "time_on_page_seconds": round(min(segment.time_s * math.exp(rng.gauss(0, 0.28)), 7200.0), 1),
            "session_event_sequence": session.events,
        }
        if referrer:
            data["referrer_url"] = referrer
        if search_query is not None:
            data["search_query"] = search_query
        return data

    def next_record(self) -> GeneratedEvent:
        rng = self.rng
        if self.sessions and self.sessions[0][0] < self.next_arrival:
            t, _, session = heapq.heappop(self.sessions)
        else:
            t = self.next_arrival
            self.next_arrival = self._arrival_after(t)
            session = self._start_session()
        self.now = t
        data = self._interaction(session, t)
        purchased = data["event_type"] == "purchase"
        if purchased:
            session.cart.clear()
        ends = rng.random() < (0.5 if purchased else 1.0 / session.segment.session_events)
        if not ends and session.events < MAX_SESSION_EVENTS:
            self.pushes += 1
            heapq.heappush(self.sessions, (t + data["time_on_page_seconds"], self.pushes, session))
        truth = {"segment": session.segment.name, "session_ends": ends or session.events >= MAX_SESSION_EVENTS}
        return GeneratedEvent("record", data, data["customer_id"], data["event_id"], t, truth)

    def gauges(self) -> dict[str, float]:
        return {"active_sessions": float(len(self.sessions))}
