"""Realistic sample payloads for the prediction forms ("Randomize All Fields").

The producers' generator is the source of realistic events: when `producers` provides one, a sample is one of
its records. Until then (or if it fails) a sample is drawn from the domain declaration itself: a choice for
each categorical field, a value inside each declared range, the current time for timestamps.
"""

from __future__ import annotations

import copy
import importlib
import math
import random
import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from eventing.domain import Domain
from eventing.schema import Field

POOL_SIZE = 256
_pools: dict[str, list[dict[str, Any]]] = {}
_pool_lock = threading.Lock()


def _record_pool(domain: Domain) -> list[dict[str, Any]] | None:
    """POOL_SIZE realistic records of `domain` from ONE run of the producers' generator, built once per process.

    Building a generator costs ~0.1-0.5 s (TFD) on this machine: per page load and per "Randomize" click that
    was most of a page build. A pool drawn once keeps every later sample a dictionary copy.
    """
    pool = _pools.get(domain.name)
    if pool is not None:
        return pool
    with _pool_lock:
        if domain.name in _pools:
            return _pools[domain.name]
        try:
            module = importlib.import_module("producers.generators")
            make_generator = module.make_generator
            events = make_generator(domain.name, seed=random.getrandbits(48), start="now").take(POOL_SIZE)
            pool = [dict(event.data) for event in events]
        except Exception:  # producers not installed or broken: fall back to the declaration
            return None
        _pools[domain.name] = pool
        return pool


def warm_samples(domains: Iterable[Domain]) -> None:
    """Build every domain's sample pool (the dashboard calls this in a thread at start)."""
    for domain in domains:
        _record_pool(domain)


def _producer_sampler(domain: Domain) -> Callable[[random.Random], dict[str, Any]] | None:
    """A function rng -> record from the producers' generator, if producers/ offers one.

    The record is a copy of a pooled one with a fresh id and the current time (the form shows "now").
    """
    pool = _record_pool(domain)
    if not pool:
        return None

    def sample(rng: random.Random) -> dict[str, Any]:
        record = copy.deepcopy(rng.choice(pool))
        if domain.id_field and domain.id_field in record:
            record[domain.id_field] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if "timestamp" in record:
            record["timestamp"] = datetime.now(UTC).isoformat()
        return record

    return sample


def _sample_number(field: Field, rng: random.Random) -> float:
    low = field.minimum if field.minimum is not None else 0.0
    high = field.maximum if field.maximum is not None else max(low, 0.0) + 100.0
    if field.unit == "degrees":
        # Keep points on land-ish latitudes; a uniform sphere puts most points in oceans near the poles.
        low, high = max(low, -60.0), min(high, 70.0)
    if low > 0 and high / low > 1000:
        # Wide positive ranges (amounts, prices, durations) are skewed: sample on a log scale.
        return math.exp(rng.uniform(math.log(low), math.log(high) - 2.0))
    if low == 0 and high > 1000:
        return math.exp(rng.uniform(0.0, math.log(high) - 2.0)) - 1.0
    return rng.uniform(low, high)


def _sample_field(path: str, field: Field, rng: random.Random) -> Any:
    if field.choices:
        return rng.choice(field.choices)
    if field.type == "boolean":
        return rng.random() < 0.85  # checks that usually pass (CVV given, billing address matches)
    if field.type == "integer":
        return int(round(_sample_number(field, rng)))
    if field.type == "number":
        return round(_sample_number(field, rng), 4 if field.unit == "degrees" else 2)
    if field.type == "timestamp":
        return datetime.now(UTC).replace(microsecond=0).isoformat()
    if "ip" in field.name:
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    if "url" in field.name:
        return f"https://shop.example/{rng.choice(['home', 'search', 'product', 'cart'])}"
    return f"{field.name.removesuffix('_id')}-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}"


def _set_path(payload: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = payload
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def declared_sample(domain: Domain, rng: random.Random | None = None) -> dict[str, Any]:
    """A valid record drawn only from the domain declaration (choices, ranges, types)."""
    rng = rng or random.Random()
    payload: dict[str, Any] = {}
    for path, field in domain.leaf_fields():
        if field.role == "target":
            continue
        _set_path(payload, path, _sample_field(path, field, rng))
    return payload


def sample_payload(domain: Domain, rng: random.Random | None = None) -> dict[str, Any]:
    """A realistic record for `domain`: the producers' generator when available, else the declaration."""
    rng = rng or random.Random()
    sampler = _producer_sampler(domain)
    if sampler is not None:
        try:
            record = sampler(rng)
            if domain.target:
                record.pop(domain.target, None)
            domain.validate(record, purpose="prediction")
            return record
        except Exception:  # a generator bug must not break the form: fall back to the declaration
            pass
    return declared_sample(domain, rng)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km.

    >>> round(haversine_km(0, 0, 0, 1), 1)
    111.2
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0088 * 2 * math.asin(math.sqrt(a))
