"""River on a study's events: the domain's default model replayed over the training part, then its answers on
the test part, progressive (test-then-train, it keeps learning) and frozen (the model as it was at the split).
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import pandas as pd

from eventing.domain import Domain
from functions.batch.dataset import Progress, Split
from functions.lake.rows import flat_name


def clean_events(domain: Domain, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as the clean (nested) events learn-one takes: the inverse of the lake's flattening."""
    paths = [path for path, _f in domain.leaf_fields() if flat_name(path) in frame.columns]
    columns: dict[str, list[Any]] = {}
    for path in paths:
        column = frame[flat_name(path)]
        if str(column.dtype).startswith("datetime64"):
            columns[path] = [t.isoformat() for t in column]
        else:
            columns[path] = column.tolist()
    if domain.target and domain.task == "classification":
        columns[domain.target] = [bool(v) for v in columns[domain.target]]
    events: list[dict[str, Any]] = []
    for i in range(len(frame)):
        event: dict[str, Any] = {}
        for path in paths:
            value = columns[path][i]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            head, _, leaf = path.rpartition(".")
            (event.setdefault(head, {}) if head else event)[leaf] = value
        events.append(event)
    return events


def river_answers(domain: Domain, split: Split, progress: Progress | None = None) -> dict[str, Any]:
    """The River model's answers on the test events: progressive (test-then-train, it keeps learning) and frozen
    (the model at the split). Replays the training part first; also returns its events/s."""
    from functions.model_state.online_model import OnlineModel

    say = progress or (lambda _msg: None)
    state = OnlineModel.fresh(domain)
    train_events = clean_events(domain, split.train)
    test_events = clean_events(domain, split.test)
    train_ms = (split.train["_time"].astype("int64") // 1_000_000).tolist()
    test_ms = (split.test["_time"].astype("int64") // 1_000_000).tolist()
    started = time.perf_counter()
    seq = 0
    for event, t_ms in zip(train_events, train_ms, strict=True):
        seq += 1
        state.learn_one(seq, "record", event, int(t_ms))
        if seq % 20_000 == 0:
            say(f"River {state.model_name}: {seq}/{len(train_events)} training events replayed")
    frozen = copy.deepcopy(state)
    progressive: list[Any] = []
    for event, t_ms in zip(test_events, test_ms, strict=True):
        seq += 1
        progressive.append(state.learn_one(seq, "record", event, int(t_ms)).prediction)
    frozen_answers = [frozen.predict_one(domain.features(e)) for e in test_events]
    elapsed = time.perf_counter() - started
    return {
        "model": state.model_name,
        "progressive": progressive,
        "frozen": frozen_answers,
        "learn_errors": state.learn_errors,
        "seconds": elapsed,
        "events_per_s": (len(train_events) + len(test_events)) / elapsed if elapsed > 0 else None,
        "live_metrics": {k: v for k, v in state.metric_values().items() if isinstance(v, int | float)},
    }
