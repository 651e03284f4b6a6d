"""Card transactions with ~1-3% fraud, learnable from the transaction's own fields and nothing hidden.

Who acts is the hidden factor. Most transactions are made by the card's owner: amounts around the owner's own
typical amount, the owner's usual categories, payment method and device, the CVV given and the billing address
matching almost always. A small, hour-dependent share (more at night) is made by a fraudster, on

- a compromised card of a returning user: a burst of a few transactions on the same card (same user_id),
- a synthetic identity: an account opened days ago to be drained,

and a fraudster's transaction differs from an owner's in exactly the fields a model sees: larger amounts than
the owner's usual, gift cards and electronics, credit cards and crypto, the CVV often missing, the billing
address often not matching, a device the owner never used, night hours. A fraudster's transaction is labelled
fraud 93% of the time (some fraud is never reported); an owner's 0.2% of the time (friendly fraud). Nothing of
this (who acted, the pattern, the owner's typical amount) is a field: models must learn it from the fields.

`drift_at` switches fraud to a second pattern (wallet account takeover): moderate amounts, travel and
restaurants, Apple Pay and PayPal, the CVV given and the address matching as an owner's would, in the daytime,
and a wave of it (about 4% of transactions, twice the usual fraud). A model of the first pattern misses almost
all of it until it adapts, which its drift detector sees (docs/adr/0071-drift-detection-on-producer-drift.md).

With `delayed_labels`, a record carries no `is_fraud`; a separate `label` event {transaction_id, user_id,
is_fraud} follows later (exponential delay, mean one simulated hour), as a chargeback would.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventing.domains.tfd import BROWSERS, CURRENCIES, DOMAIN, OSES, PAYMENT_METHODS, PRODUCT_CATEGORIES
from producers.generators.base import GeneratedEvent, StreamGenerator, hour_of, iso
from producers.generators.categorical import Categorical

# (city, lat, lon, currency, units of the currency per USD)
CITIES = (
    ("New York", 40.7128, -74.0060, "USD", 1.0),
    ("Houston", 29.7604, -95.3698, "USD", 1.0),
    ("San Francisco", 37.7749, -122.4194, "USD", 1.0),
    ("Toronto", 43.6532, -79.3832, "CAD", 1.36),
    ("London", 51.5074, -0.1278, "GBP", 0.79),
    ("Paris", 48.8566, 2.3522, "EUR", 0.92),
    ("Berlin", 52.5200, 13.4050, "EUR", 0.92),
    ("São Paulo", -23.5505, -46.6333, "BRL", 5.0),
    ("Tokyo", 35.6762, 139.6503, "JPY", 150.0),
)
CITY = Categorical({i: w for i, w in enumerate((5, 3, 2, 1.5, 2, 1.5, 1, 1, 0.6))})
assert {c[3] for c in CITIES} <= set(CURRENCIES)

DEVICES = {  # os -> browsers seen with it
    "Windows": ("Chrome", "Edge", "Firefox", "Opera"),
    "macOS": ("Safari", "Chrome", "Firefox"),
    "Linux": ("Chrome", "Firefox"),
    "Android": ("Chrome", "App", "Firefox", "Opera"),
    "iOS": ("Safari", "App", "Chrome"),
}
assert set(DEVICES) <= set(OSES) and {b for bs in DEVICES.values() for b in bs} <= set(BROWSERS)
OS = Categorical({"Windows": 3, "macOS": 2, "Linux": 0.4, "Android": 3, "iOS": 3})
USER_AGENTS = {
    "Windows": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)",
    "macOS": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Linux": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
    "Android": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko)",
    "iOS": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)",
}
BROWSER_AGENT = {
    "Chrome": "Chrome/120.0.0.0 Safari/537.36",
    "Edge": "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
    "Firefox": "Firefox/121.0",
    "Opera": "Chrome/120.0.0.0 Safari/537.36 OPR/106.0.0.0",
    "Safari": "Version/17.2 Safari/605.1.15",
    "App": "CoelhoPay/4.2",
}

# Owners' habits.
OWNER_CATEGORY = {
    "groceries": 4,
    "restaurants": 3,
    "clothing": 2,
    "home": 2,
    "health": 1.5,
    "electronics": 1,
    "travel": 0.7,
    "gaming": 0.8,
    "jewelry": 0.2,
    "gift_cards": 0.4,
}
OWNER_PAYMENT = Categorical(
    {"credit_card": 35, "debit_card": 30, "apple_pay": 15, "paypal": 12, "bank_transfer": 6, "crypto": 2}
)
OWNER_TYPE = Categorical({"purchase": 82, "subscription": 7, "withdrawal": 5, "transfer": 4, "refund": 2})

# Fraud patterns: (categories, payment methods, transaction types, log-amount shift and spread over the
# owner's typical amount, P(CVV given), P(billing address matches), hour-of-day weight profile).
# Relative odds of a fraudster by hour of day (normalised below so that `share` is the mean over transactions).
NIGHT = tuple(3.0 if h < 6 else 1.5 if h >= 22 else 0.8 for h in range(24))
DAYTIME = tuple(1.4 if 9 <= h <= 19 else 0.5 for h in range(24))


@dataclass(frozen=True)
class FraudPattern:
    name: str
    category: Categorical[str]
    payment: Categorical[str]
    type: Categorical[str]
    amount_shift: float
    amount_sd: float
    cvv: float
    billing: float
    hours: tuple[float, ...]
    share: float  # fraudster transactions per transaction, on average over the day

    def by_hour(self, intensity: tuple[float, ...]) -> tuple[float, ...]:
        """P(fraudster) at each hour, such that its mean over transactions (intensity-weighted) is `share`."""
        norm = sum(i * h for i, h in zip(intensity, self.hours, strict=True)) / sum(intensity)
        return tuple(self.share * h / norm for h in self.hours)


CARD_NOT_PRESENT = FraudPattern(
    "card_not_present",
    Categorical(
        {
            "gift_cards": 4,
            "electronics": 3,
            "jewelry": 2.5,
            "gaming": 2,
            "travel": 1.2,
            "clothing": 0.8,
            "home": 0.3,
            "health": 0.2,
            "groceries": 0.15,
            "restaurants": 0.15,
        }
    ),
    Categorical({"credit_card": 50, "crypto": 20, "paypal": 14, "debit_card": 10, "bank_transfer": 4, "apple_pay": 2}),
    Categorical({"purchase": 72, "transfer": 14, "withdrawal": 12, "subscription": 2}),
    amount_shift=1.0,
    amount_sd=0.9,
    cvv=0.6,
    billing=0.5,
    hours=NIGHT,
    share=0.0175,
)
WALLET_TAKEOVER = FraudPattern(
    "wallet_takeover",
    Categorical(
        {
            "travel": 4,
            "restaurants": 2.5,
            "groceries": 1.5,
            "clothing": 1.5,
            "electronics": 1,
            "health": 0.6,
            "home": 0.6,
            "gaming": 0.4,
            "jewelry": 0.3,
            "gift_cards": 0.2,
        }
    ),
    Categorical({"apple_pay": 45, "paypal": 30, "debit_card": 15, "credit_card": 8, "bank_transfer": 2}),
    Categorical({"purchase": 90, "subscription": 6, "transfer": 4}),
    amount_shift=0.25,
    amount_sd=0.6,
    cvv=0.97,
    billing=0.95,
    hours=DAYTIME,
    share=0.04,
)

TRANSACTIONS_PER_DAY = 7000  # of the simulated card network: a simulated week is ~50k events
INTENSITY = tuple(0.25 if h < 6 else 1.4 if 11 <= h <= 20 else 1.0 for h in range(24))
_norm = sum(INTENSITY) / 24
INTENSITY = tuple(i / _norm for i in INTENSITY)
MEAN_GAP_S = 86400 / TRANSACTIONS_PER_DAY
LABEL_DELAY_S = 3600.0  # mean delay of a delayed label (a chargeback), in simulated seconds


@dataclass(slots=True)
class CardHolder:
    user_id: str
    created: float  # account creation, epoch seconds
    city: int
    lat: float
    lon: float
    ip: str
    os: str
    browser: str
    payment: str
    categories: Categorical[str]
    log_typical_usd: float  # the owner's typical amount: hidden, the reference a fraudster's amount deviates from
    synthetic: bool = False  # an account opened by a fraudster
    compromised_left: int = 0  # fraudster transactions still to come on this card


class TransactionGenerator(StreamGenerator):
    """Transactions of returning card holders, some made by fraudsters; see the module docstring."""

    domain = DOMAIN

    def __init__(
        self,
        seed: int | None = None,
        start: datetime | str | float | None = None,
        drift_at: int | None = None,
        delayed_labels: bool = False,
        initial_users: int = 2000,
    ) -> None:
        super().__init__(seed, start, drift_at)
        self.delayed_labels = delayed_labels
        self.users: list[CardHolder] = [self._new_user(self._account_age_s()) for _ in range(initial_users)]
        self.compromised: list[CardHolder] = []
        self.synthetic: list[CardHolder] = []
        self.merchants = {c: [f"merchant-{c}-{i:03d}" for i in range(40)] for c in PRODUCT_CATEGORIES}
        self.pending_labels: list[tuple[float, int, GeneratedEvent]] = []
        self.frauds = 0
        self.fraud_odds = {p.name: p.by_hour(INTENSITY) for p in (CARD_NOT_PRESENT, WALLET_TAKEOVER)}

    # --- people --------------------------------------------------------------------------------------
    def _account_age_s(self) -> float:
        # Median about two years; a few percent of accounts are under a month old.
        return min(math.exp(self.rng.gauss(math.log(700), 1.1)), 15000) * 86400

    def _ip(self) -> str:
        r = self.rng.getrandbits(32)
        return f"{(r >> 24) % 223 + 1}.{(r >> 16) & 255}.{(r >> 8) & 255}.{r & 255 or 1}"

    def _new_user(self, age_s: float, synthetic: bool = False) -> CardHolder:
        rng = self.rng
        city = CITY.draw(rng)
        os = OS.draw(rng)
        weights = {c: w * rng.gammavariate(2.0, 0.5) for c, w in OWNER_CATEGORY.items()}
        return CardHolder(
            user_id=f"user-{rng.getrandbits(40):012x}",
            created=self.now - age_s,
            city=city,
            lat=CITIES[city][1] + rng.gauss(0, 0.08),
            lon=CITIES[city][2] + rng.gauss(0, 0.08),
            ip=self._ip(),
            os=os,
            browser=rng.choice(DEVICES[os]),
            payment=OWNER_PAYMENT.draw(rng),
            categories=Categorical(weights),
            log_typical_usd=rng.gauss(math.log(45), 0.6),
            synthetic=synthetic,
        )

    def _returning_user(self) -> CardHolder:
        # Older entries of the pool are drawn more often: loyal customers make most transactions.
        return self.users[int(len(self.users) * self.rng.random() ** 1.4)]

    # --- transactions --------------------------------------------------------------------------------
    @property
    def pattern(self) -> FraudPattern:
        return WALLET_TAKEOVER if self.drifted else CARD_NOT_PRESENT

    def _fraud_victim(self, pattern: FraudPattern) -> CardHolder:
        rng = self.rng
        if rng.random() < 0.2:  # a synthetic identity, opened days ago and drained in a few transactions
            if self.synthetic and rng.random() < 0.6:
                user = rng.choice(self.synthetic)
            else:
                user = self._new_user(rng.uniform(0.2, 25) * 86400, synthetic=True)
                user.compromised_left = 1 + int(rng.expovariate(1 / 3))
                self.synthetic.append(user)
        elif self.compromised and rng.random() < 0.65:  # the same stolen card again
            user = rng.choice(self.compromised)
        else:  # a returning user's card is stolen now
            user = self._returning_user()
            user.compromised_left = 1 + int(rng.expovariate(1 / 2.5))
            self.compromised.append(user)
        user.compromised_left -= 1
        active = self.synthetic if user.synthetic else self.compromised
        if user.compromised_left <= 0 and user in active:
            active.remove(user)  # the card is blocked, or the account abandoned
        return user

    def next_record(self) -> GeneratedEvent:
        rng = self.rng
        t = self.advance(MEAN_GAP_S, INTENSITY)
        pattern = self.pattern
        fraudster = rng.random() < self.fraud_odds[pattern.name][hour_of(t)]
        if fraudster:
            user = self._fraud_victim(pattern)
            currency_rate = CITIES[user.city][4]
            usd = math.exp(user.log_typical_usd + pattern.amount_shift + rng.gauss(0, pattern.amount_sd))
            category = pattern.category.draw(rng)
            payment = pattern.payment.draw(rng)
            kind = pattern.type.draw(rng)
            cvv = rng.random() < pattern.cvv
            billing = rng.random() < pattern.billing
            os = OS.draw(rng)
            browser = rng.choice(DEVICES[os])
            city = CITY.draw(rng)
            lat, lon = CITIES[city][1] + rng.gauss(0, 0.3), CITIES[city][2] + rng.gauss(0, 0.3)
            ip = self._ip()
            is_fraud = rng.random() < 0.93
        else:
            if rng.random() < 0.006:  # a new customer joins
                user = self._new_user(rng.uniform(0, 2) * 86400)
                self.users.append(user)
            else:
                user = self._returning_user()
            currency_rate = CITIES[user.city][4]
            usd = math.exp(user.log_typical_usd + rng.gauss(0, 0.7))
            category = user.categories.draw(rng)
            payment = user.payment if rng.random() < 0.75 else OWNER_PAYMENT.draw(rng)
            kind = OWNER_TYPE.draw(rng)
            cvv = rng.random() < (0.45 if kind == "subscription" else 0.96)
            billing = rng.random() < 0.97
            os, browser = user.os, user.browser
            if rng.random() < 0.05:  # a new phone, a friend's laptop
                os = OS.draw(rng)
                browser = rng.choice(DEVICES[os])
            lat, lon = user.lat + rng.gauss(0, 0.02), user.lon + rng.gauss(0, 0.02)
            ip = user.ip if rng.random() < 0.9 else self._ip()
            is_fraud = rng.random() < 0.002
        self.frauds += is_fraud
        transaction_id = self.new_id()
        data: dict[str, Any] = {
            "transaction_id": transaction_id,
            "user_id": user.user_id,
            "timestamp": iso(t),
            "amount": round(min(max(usd * currency_rate, 0.5), 100_000.0), 2),
            "currency": CITIES[user.city][3],
            "merchant_id": rng.choice(self.merchants[category]),
            "product_category": category,
            "transaction_type": kind,
            "payment_method": payment,
            "location": {"lat": round(lat, 5), "lon": round(lon, 5)},
            "ip_address": ip,
            "device_info": {"os": os, "browser": browser},
            "user_agent": f"{USER_AGENTS[os]} {BROWSER_AGENT[browser]}",
            "account_age_days": max(0, int((t - user.created) // 86400)),
            "cvv_provided": cvv,
            "billing_address_match": billing,
            "is_fraud": is_fraud,
        }
        truth = {
            "fraudster": fraudster,
            "pattern": pattern.name if fraudster else None,
            "synthetic_identity": user.synthetic,
        }
        if self.delayed_labels:
            del data["is_fraud"]
            label = {"transaction_id": transaction_id, "user_id": user.user_id, "is_fraud": is_fraud}
            due = t + rng.expovariate(1 / LABEL_DELAY_S)
            event = GeneratedEvent("label", label, user.user_id, f"{transaction_id}/label", due, truth)
            heapq.heappush(self.pending_labels, (due, self.records, event))
        return GeneratedEvent("record", data, user.user_id, transaction_id, t, truth)

    def next_events(self) -> list[GeneratedEvent]:
        record = self.next_record()
        self.records += 1
        due: list[GeneratedEvent] = []
        while self.pending_labels and self.pending_labels[0][0] <= record.time:
            due.append(heapq.heappop(self.pending_labels)[2])
        due.append(record)
        return due

    def finish(self) -> list[GeneratedEvent]:
        out = [item[2] for item in sorted(self.pending_labels)]
        self.pending_labels.clear()
        return out

    def gauges(self) -> dict[str, float]:
        return {"fraud_ratio": self.frauds / self.records if self.records else 0.0}


assert set(PAYMENT_METHODS) >= set(OWNER_PAYMENT.values)
