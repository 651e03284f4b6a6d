"""A label that arrives before its record waits for it (functions/model_state/online_model.py): the record is then
learned with it, as if it had come labelled; parked labels are bounded in number and in log time."""

from __future__ import annotations

import pytest

from eventing.domains import get_domain
from functions.model_state import online_model
from functions.model_state.codec import decode, encode
from functions.model_state.online_model import EARLY_LABEL_TTL_MS, OnlineModel
from tests.functions.streams import events
from tests.functions.test_model_state import assert_same_model

TFD = get_domain("tfd")


def label_of(event: dict) -> dict:
    return {TFD.id_field: event[TFD.id_field], TFD.target: event[TFD.target]}


def without_label(event: dict) -> dict:
    return {k: v for k, v in event.items() if k != TFD.target}


def test_a_label_before_its_record_is_learned_when_the_record_comes() -> None:
    stream = events("tfd", 40, seed=91)
    early = OnlineModel.fresh(TFD)
    reference = OnlineModel.fresh(TFD)
    seq = 0
    for i, event in enumerate(stream):
        reference.learn_one(i + 1, "record", event, 1000 * i)
    for i, event in enumerate(stream):  # every label first, then its record without the target
        seq += 1
        assert not early.learn_one(seq, "label", label_of(event), 1000 * i).learned
        seq += 1
        assert early.learn_one(seq, "unlabeled", without_label(event), 1000 * i).learned
    assert early.events_learned == reference.events_learned == 40
    assert early.labels_unmatched == 0 and not early.pending and not early.early_labels
    reference.seq = early.seq  # positions differ (twice the entries); everything learned is the same
    assert_same_model(early, reference, events("tfd", 10, seed=92))


def test_parked_labels_survive_a_snapshot() -> None:
    (event,) = events("tfd", 1, seed=93)
    state = OnlineModel.fresh(TFD)
    state.learn_one(1, "label", label_of(event), 0)
    copy = decode(encode(state))
    assert copy.learn_one(2, "unlabeled", without_label(event), 10).learned


def test_a_parked_label_expires_after_its_ttl_in_log_time() -> None:
    first, second = events("tfd", 2, seed=94)
    state = OnlineModel.fresh(TFD)
    state.learn_one(1, "label", label_of(first), 0)
    state.learn_one(2, "label", label_of(second), EARLY_LABEL_TTL_MS)
    outcome = state.learn_one(3, "unlabeled", without_label(first), EARLY_LABEL_TTL_MS + 1)
    assert not outcome.learned and state.labels_unmatched == 1  # too late: it waits for a label as usual
    assert state.learn_one(4, "unlabeled", without_label(second), EARLY_LABEL_TTL_MS + 2).learned


def test_parked_labels_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(online_model, "MAX_EARLY_LABELS", 5)
    stream = events("tfd", 8, seed=95)
    state = OnlineModel.fresh(TFD)
    for i, event in enumerate(stream):
        state.learn_one(i + 1, "label", label_of(event), i)
    assert len(state.early_labels) == 5 and state.labels_unmatched == 3
    assert state.summary()["labels_waiting_for_record"] == 5
