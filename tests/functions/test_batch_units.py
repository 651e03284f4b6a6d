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
