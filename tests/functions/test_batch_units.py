"""Batch studies without services: the columnar features equal the domain's per-event `features`, the lake rows
turn back into the clean events River learns, the split is by time, the gaps and the report's table."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from eventing.domains import get_domain
from functions.batch.dataset import time_split
from functions.batch.features import feature_frame
from functions.batch.online import clean_events
from functions.batch.scores import gaps, is_better
from functions.lake.rows import arrow_table, lake_table
from tests.functions.batch_lake import lake_rows


def frame_of(domain: str, count: int = 400) -> tuple[pd.DataFrame, list[Any]]:
    rows = [r for r in lake_rows(domain, count, seed=11) if r.table.kind == "record"]
    frame = arrow_table(lake_table(domain, "record"), rows).to_pandas()
    return frame.assign(_time=pd.to_datetime(frame["timestamp"], utc=True)), rows


@pytest.mark.parametrize("domain", ["tfd", "eta", "ecci"])
def test_columnar_features_equal_the_domain_features(domain: str) -> None:
    spec = get_domain(domain)
    frame, rows = frame_of(domain)
    columnar = feature_frame(spec, frame)
    for i, row in enumerate(rows):
        expected = spec.features(spec.validate(row.raw["data"]))
        got = columnar.iloc[i].to_dict()
        assert set(got) == set(expected)
        for name, value in expected.items():
            if isinstance(value, str):
                assert got[name] == value, (i, name)
            else:
                assert math.isclose(float(got[name]), float(value), rel_tol=1e-9), (i, name)


@pytest.mark.parametrize("domain", ["tfd", "eta", "ecci"])
def test_rows_become_the_clean_events_again(domain: str) -> None:
    spec = get_domain(domain)
    frame, rows = frame_of(domain, 100)
    for event, row in zip(clean_events(spec, frame), rows, strict=True):
        assert spec.features(event) == spec.features(spec.validate(row.raw["data"]))


def test_time_split_never_shuffles() -> None:
    frame, _rows = frame_of("eta", 400)
    frame = frame.sort_values("_time").reset_index(drop=True)
    split = time_split(frame)
    assert split.train["_time"].max() < split.split_time <= split.test["_time"].min()
    assert len(split.train) + len(split.test) == len(frame)
    assert 0.2 < len(split.test) / len(frame) < 0.3


def test_gaps_and_their_direction() -> None:
    out = gaps("classification", {"roc_auc": 0.9, "log_loss": 0.05}, {"roc_auc": 0.85, "log_loss": 0.08})
    assert out == {"roc_auc": pytest.approx(0.05), "log_loss": pytest.approx(-0.03)}
    assert is_better("roc_auc", out["roc_auc"]) and is_better("log_loss", out["log_loss"])  # type: ignore[arg-type]
    assert gaps("clustering", {"ari": None, "silhouette": 0.3}, {"silhouette": 0.2})["ari"] is None


def test_event_times_with_and_without_fractions_of_a_second() -> None:
    """A stream mixes `...:03.5+00:00` and `...:03+00:00`: pandas infers one format from the first value unless
    told ISO 8601, and failed on the first whole second (1,000,000 tfd rows)."""
    from functions.batch.dataset import prepared

    spec = get_domain("tfd")
    frame, _rows = frame_of("tfd", 50)
    stamps = ["2026-05-04T18:27:03.500000+00:00", "2026-05-04T18:27:04+00:00"] * (len(frame) // 2 + 1)
    frame = frame.drop(columns="_time").assign(timestamp=stamps[: len(frame)])
    ready = prepared(spec, frame)
    assert ready["_time"].iloc[-1] == pd.Timestamp("2026-05-04T18:27:04Z")
    assert set(feature_frame(spec, ready)["hour_of_day"]) == {"h18"}


def test_frauds_weigh_the_root_of_the_class_ratio() -> None:
    from functions.batch.models import BATCH_MODELS, positive_weight

    assert positive_weight([True] * 2 + [False] * 198) == pytest.approx(math.sqrt(99))
    assert positive_weight([False] * 10) == 1.0
    pipeline = BATCH_MODELS["classification"]["hist_gradient_boosting"](["c"], ["x"], y=[True] + [False] * 24)
    assert pipeline.named_steps["model"].class_weight == {True: pytest.approx(math.sqrt(24))}


@pytest.mark.parametrize("domain", ["tfd", "eta", "ecci"])
def test_a_batch_model_replies_with_the_domain_reply_fields(domain: str) -> None:
    from functions.batch.features import categorical_columns
    from functions.batch.models import BATCH_MODELS
    from functions.batch.serving import BatchModel

    spec = get_domain(domain)
    frame, rows = frame_of(domain, 400)
    x = feature_frame(spec, frame)
    categorical = categorical_columns(x)
    numeric = [c for c in x.columns if c not in categorical]
    factory = next(iter(BATCH_MODELS[spec.task].values()))
    if spec.task == "clustering":
        pipeline = factory(categorical, numeric, k=3).fit(x)
    else:
        y = frame[spec.target].astype(bool if spec.task == "classification" else float).to_numpy().copy()
        if spec.task == "classification":
            y[:5] = True  # both classes, whatever the seed drew
        pipeline = factory(categorical, numeric, y=y).fit(x, y)
    model = BatchModel(spec, 4, pipeline, train_rows=len(x), k=3)
    request = spec.validate(rows[0].raw["data"], purpose="prediction")
    raw = model.predict_one(spec.features(request))
    reply = model.reply(raw, request)
    assert set(reply) == {f.name for f in spec.reply_fields()}
    assert (reply["model"], reply["version"], reply["frozen"], reply["events_learned"]) == ("batch", 4, True, len(x))
    # the same answer as the pipeline on the study's columns: one row of features, in the pipeline's order
    expected = model.predict_many([dict(x.iloc[0])])[0]
    assert raw == pytest.approx(expected)
