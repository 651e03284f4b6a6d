"""Validation names every bad field and says why: missing, wrong type, out of range, unknown value, nested paths."""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest

import producers
from eventing.domains import DOMAINS, ECCI, ETA, TFD, get_domain
from eventing.schema import ValidationError


@functools.cache
def _clean_record(domain: str) -> dict[str, Any]:
    return producers.records(domain, 1, seed=11)[0]


def _record(domain: str) -> dict[str, Any]:
    return copy.deepcopy(_clean_record(domain))


def _errors(domain: str, payload: Any, purpose: str = "record") -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        get_domain(domain).validate(payload, purpose=purpose)  # type: ignore[arg-type]
    assert info.value.domain == get_domain(domain).name
    assert set(info.value.to_dict()["fields"]) == set(info.value.errors)
    return info.value.errors


@pytest.mark.parametrize("domain", list(DOMAINS))
def test_a_generated_record_is_already_clean(domain: str) -> None:
    record = _record(domain)
    assert DOMAINS[domain].validate(record) == record


@pytest.mark.parametrize("domain", list(DOMAINS))
def test_every_required_field_missing_is_named(domain: str) -> None:
    d = DOMAINS[domain]
    for path, field in d.leaf_fields():
        record = _record(domain)
        parent, _, leaf = path.rpartition(".")
        (record[parent] if parent else record).pop(leaf, None)
        if field.required:
            assert _errors(domain, record) == {path: "missing"}
        else:
            d.validate(record)


def test_missing_nested_object_and_empty_payloads() -> None:
    record = _record("tfd")
    del record["location"]
    assert _errors("tfd", record) == {"location": "missing"}
    errors = _errors("eta", {})
    assert {"trip_id", "origin", "simulated_actual_travel_time_seconds"} <= set(errors)
    assert set(errors.values()) == {"missing"}
    assert _errors("ecci", ["not", "an", "object"]) == {"data": "wrong type: expected a JSON object, got list"}


def test_wrong_types_are_named_with_what_was_expected() -> None:
    record = _record("tfd")
    record.update(amount="twelve", cvv_provided="maybe", account_age_days=3.5, timestamp="yesterday", currency=7)
    record["device_info"] = "iPhone"
    errors = _errors("tfd", record)
    assert errors["amount"].startswith("wrong type: expected a number")
    assert errors["cvv_provided"].startswith("wrong type: expected a boolean")
    assert errors["account_age_days"].startswith("wrong type: expected an integer")
    assert "ISO 8601" in errors["timestamp"]
    assert errors["currency"].startswith("wrong type: expected a string")
    assert errors["device_info"].startswith("wrong type: expected an object with os, browser")
    assert len(errors) == 6


def test_out_of_range_values_say_the_bound() -> None:
    record = _record("eta")
    record.update(hour_of_day=24, driver_rating=0.5, estimated_distance_km=-1)
    errors = _errors("eta", record)
    assert errors == {
        "hour_of_day": "out of range: 24 is above the maximum 23",
        "driver_rating": "out of range: 0.5 is below the minimum 1",
        "estimated_distance_km": "out of range: -1 is below the minimum 0",
    }


def test_unknown_values_list_the_allowed_ones() -> None:
    record = _record("ecci")
    record["event_type"] = "teleport"
    record["device_info"]["device_type"] = "smart fridge"
    errors = _errors("ecci", record)
    assert errors["event_type"].startswith("unknown value 'teleport': allowed are page_view, search")
    assert errors["device_info.device_type"] == "unknown value 'smart fridge': allowed are desktop, mobile, tablet"


def test_nested_fields_are_named_by_their_path() -> None:
    record = _record("tfd")
    record["location"] = {"lat": 91.0, "lon": "east"}
    assert _errors("tfd", record) == {
        "location.lat": "out of range: 91 is above the maximum 90",
        "location.lon": "wrong type: expected a number, got 'east'",
    }
    trip = _record("eta")
    del trip["destination"]["lon"]
    assert _errors("eta", trip) == {"destination.lon": "missing"}


def test_every_mistake_at_once_is_reported_together() -> None:
    record = _record("tfd")
    del record["user_id"]
    record.update(amount=-5, payment_method="barter")
    record["location"]["lat"] = "north"
    errors = _errors("tfd", record)
    assert set(errors) == {"user_id", "amount", "payment_method", "location.lat"}
    assert "user_id: missing" in str(ValidationError(errors, "tfd"))


def test_purposes_prediction_unlabeled_and_label() -> None:
    record = _record("tfd")
    del record["is_fraud"]
    assert _errors("tfd", record) == {"is_fraud": "missing"}
    assert TFD.validate(record, purpose="unlabeled") == record
    del record["transaction_id"]
    assert _errors("tfd", record, "unlabeled") == {"transaction_id": "missing"}  # still needed to join its label
    assert "transaction_id" not in TFD.validate(record, purpose="prediction")
    label = {"transaction_id": "t-1", "user_id": "user-1", "is_fraud": "true", "extra": 1}
    assert TFD.validate(label, purpose="label") == {"transaction_id": "t-1", "user_id": "user-1", "is_fraud": True}
    assert _errors("tfd", {"transaction_id": "t-1", "is_fraud": 2}, "label") == {
        "user_id": "missing",
        "is_fraud": "wrong type: expected a boolean, got 2",
    }
    with pytest.raises(ValueError, match="no target"):
        ECCI.validate({}, purpose="label")
    assert ETA.validate(_record("eta"), purpose="label")["trip_id"]
