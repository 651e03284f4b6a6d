"""The data of a study: a domain's lake table read at a recorded Delta version, and split by time.

`read_dataset` reads the records table at `version` (the latest when None), only the columns the features, the event
time, the id and the target need, columnar (`DeltaTable(...).to_pyarrow_table(columns=...)`). A record whose target
is null (a delayed label) takes it from the `<table>_labels` table, joined on the domain's id; records still without
a target are dropped and counted; `rows` keeps the most recent N rows. `time_split` splits by the event's own time,
never shuffled. Whatever is wrong with the input is a `StudyError`, raised before anything is logged.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from eventing.domain import Domain
from eventing.domains import get_domain
from functions.lake.rows import event_time_path, flat_name, lake_table
from functions.lake.service import uri_of
from functions.lake.tables import storage_options

MIN_ROWS = 200  # fewer usable rows than this: no study (each part must hold enough events to score)
TEST_FRACTION = 0.25

Progress = Callable[[str], None]


class StudyError(ValueError):
    """The input cannot make a study (no table, no such version, too few rows, no target): nothing was logged."""


@dataclass
class Dataset:
    """A domain's rows as read for a study: sorted by event time, with the columns the study needs."""

    domain: Domain
    frame: pd.DataFrame
    uri: str
    version: int
    latest_version: int
    labels_version: int | None = None
    rows_read: int = 0
    dropped_unlabeled: int = 0


def _open_table(uri: str, options: Mapping[str, str], version: int | None, what: str) -> tuple[Any, int]:
    from deltalake import DeltaTable

    try:
        latest = DeltaTable(uri, storage_options=dict(options))
    except Exception as exc:
        raise StudyError(
            f"no Delta table at {uri} ({what}): has the lake function written any event? "
            f"({str(exc).splitlines()[0][:200]})"
        ) from None
    newest = int(latest.version())
    if version is None:
        return latest, newest
    if version < 0 or version > newest:
        raise StudyError(f"{what} {uri} has no version {version}: its versions are 0 to {newest}")
    try:
        return DeltaTable(uri, storage_options=dict(options), version=version), newest
    except Exception as exc:  # a version whose log files were cleaned up (log retention)
        raise StudyError(
            f"{what} {uri} cannot be read at version {version}: {str(exc).splitlines()[0][:200]}"
        ) from None


def needed_columns(domain: Domain) -> list[str]:
    paths = [domain.id_field, *domain.field_names("feature")]
    time_path = event_time_path(domain)
    if time_path:
        paths.append(time_path)
    if domain.target:
        paths.append(domain.target)
    return list(dict.fromkeys(flat_name(p) for p in paths))


def prepared(domain: Domain, frame: pd.DataFrame, rows: int | None = None) -> pd.DataFrame:
    """`frame` sorted by event time (column `_time`), one row per event id, the most recent `rows` only."""
    time_column = flat_name(event_time_path(domain) or "")
    frame = frame.assign(_time=pd.to_datetime(frame[time_column], utc=True, format="ISO8601"))
    frame = frame.sort_values(["_time", flat_name(domain.id_field)], kind="stable")
    frame = frame.drop_duplicates(flat_name(domain.id_field), keep="first")
    if rows is not None:
        frame = frame.tail(rows)
    return frame.reset_index(drop=True)


def read_dataset(
    domain_name: str,
    version: int | None = None,
    rows: int | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> Dataset:
    """The domain's lake rows at `version` (see the module's docstring, step 1), or StudyError."""
    say = progress or (lambda _msg: None)
    domain = get_domain(domain_name)
    env = os.environ if environ is None else environ
    options = storage_options(env)
    records = lake_table(domain.name, "record")
    uri = uri_of(records, env)
    dt, newest = _open_table(uri, options, version, "lake table")
    read_version = int(dt.version())
    schema_names = {f.name for f in dt.schema().fields}
    wanted = needed_columns(domain)
    target = flat_name(domain.target) if domain.target else None
    if target and target not in schema_names:
        raise StudyError(f"{records.name} has no target column {target!r}: a {domain.task} study needs it")
    missing = [c for c in wanted if c not in schema_names]
    if missing:
        raise StudyError(f"{records.name} lacks the columns {missing} that the {domain.name} features need")
    say(f"reading {uri} at version {read_version} (latest {newest}): {len(wanted)} columns")
    arrow = dt.to_pyarrow_table(columns=wanted)
    frame = arrow.to_pandas()
    rows_read = len(frame)
    if rows_read == 0:
        raise StudyError(f"{records.name} is empty at version {read_version}: a study needs at least {MIN_ROWS} rows")
    labels_version = None
    dropped = 0
    if target:
        if frame[target].isna().any():
            labels_version, frame = _join_labels(domain, frame, options, env, say)
        before = len(frame)
        frame = frame[frame[target].notna()]
        dropped = before - len(frame)
        if len(frame) == 0:
            raise StudyError(
                f"{records.name} version {read_version} has no row with its target {target!r} "
                f"({rows_read} rows read, none labelled): nothing to learn from"
            )
    frame = prepared(domain, frame, rows)
    if len(frame) < MIN_ROWS:
        raise StudyError(
            f"{records.name} version {read_version} has {len(frame)} usable rows"
            f"{f' ({dropped} without a label)' if dropped else ''}: a study needs at least {MIN_ROWS}"
        )
    return Dataset(domain, frame, uri, read_version, newest, labels_version, rows_read, dropped)


def _join_labels(
    domain: Domain, frame: pd.DataFrame, options: Mapping[str, str], env: Mapping[str, str], say: Progress
) -> tuple[int | None, pd.DataFrame]:
    """Fill the null targets from the labels table (its latest version), joined on the domain's id."""
    from deltalake import DeltaTable

    labels = lake_table(domain.name, "label")
    uri = uri_of(labels, env)
    target, id_column = flat_name(domain.target or ""), flat_name(domain.id_field)
    try:
        dt = DeltaTable(uri, storage_options=dict(options))
    except Exception:
        say(f"no labels table at {uri}: rows without a target are dropped")
        return None, frame
    found = dt.to_pyarrow_table(columns=[id_column, target]).to_pandas().dropna()
    found = found.drop_duplicates(id_column, keep="first").set_index(id_column)[target]
    filled = frame[target].astype(object).where(frame[target].notna(), frame[id_column].map(found))
    say(
        f"joined {int(frame[target].isna().sum() - filled.isna().sum())} labels from {labels.name} "
        f"version {dt.version()}"
    )
    return int(dt.version()), frame.assign(**{target: filled})


@dataclass
class Split:
    train: pd.DataFrame
    test: pd.DataFrame
    split_time: pd.Timestamp
    split_index: int


def time_split(frame: pd.DataFrame, test_fraction: float = TEST_FRACTION) -> Split:
    """Train on the earlier events, test on the later ones: every train event strictly before `split_time`.

    >>> f = pd.DataFrame({"_time": pd.to_datetime([1, 2, 2, 3, 4, 5, 6, 7], unit="s", utc=True)})
    >>> s = time_split(f, 0.25); len(s.train), len(s.test), s.split_time.second
    (6, 2, 6)
    """
    n = len(frame)
    first_test = max(1, n - max(1, round(n * test_fraction)))
    split_time = frame["_time"].iloc[first_test]
    train_mask = frame["_time"] < split_time
    return Split(frame[train_mask], frame[~train_mask], split_time, int(train_mask.sum()))
