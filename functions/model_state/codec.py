"""The snapshot codec: an `OnlineModel` to bytes and back (pickle protocol 5 + lz4), as Redis snapshots and MLflow
artifacts hold it.

River's distributions carry a random generator (`_rng`) that is never used while learning or predicting; dropping
it is ~95% of a tree's pickle (measured: an adaptive random forest 82 MB -> 4 MB, same predictions after).
Snapshots written before the model state became a package (class `functions.model_state.ModelState`) still load.

    >>> from eventing.domains import ETA
    >>> from functions.model_state.online_model import OnlineModel
    >>> decode(encode(OnlineModel.fresh(ETA))).model_name == ETA.default_model
    True
"""

from __future__ import annotations

import gc
import io
import pickle
import random
from typing import Any

import lz4.frame
from river.proba.base import Distribution

from functions.model_state.online_model import OnlineModel

# Where classes of older snapshots live now: (module, name) -> (module, name).
_MOVED = {
    ("functions.model_state", "ModelState"): ("functions.model_state.online_model", "OnlineModel"),
    ("functions.model_state", "ClusterProfile"): ("functions.model_state.online_model", "ClusterProfile"),
    ("functions.model_state", "_restore_distribution"): ("functions.model_state.codec", "_restore_distribution"),
    ("functions.drift_detector", "DriftWatch"): ("functions.model_state.drift", "DriftWatch"),
}


def encode(state: OnlineModel) -> bytes:
    """pickle (protocol 5) + lz4, without the unused random state of River's distributions."""
    buffer = io.BytesIO()
    _SlimPickler(buffer, protocol=5).dump(state)
    return bytes(lz4.frame.compress(buffer.getvalue()))


def decode(blob: bytes) -> OnlineModel:
    """The `OnlineModel` of a snapshot; TypeError if the blob holds something else."""
    raw = lz4.frame.decompress(blob)
    enabled = gc.isenabled()
    gc.disable()  # 2-4x faster loads of large trees (measured), they hold no reference cycles
    try:
        state = _Unpickler(io.BytesIO(raw)).load()
    finally:
        if enabled:
            gc.enable()
    if not isinstance(state, OnlineModel):
        raise TypeError(f"snapshot holds a {type(state).__name__}, not an OnlineModel")
    return state


def _restore_distribution(cls: Any, state: dict[str, Any]) -> Any:
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    obj._rng = random.Random(state.get("seed"))
    return obj


class _SlimPickler(pickle.Pickler):
    """Drops `_rng` of River distributions (the Gaussians in tree splitters)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Distribution) and "_rng" in getattr(obj, "__dict__", {}):
            return _restore_distribution, (type(obj), {k: v for k, v in obj.__dict__.items() if k != "_rng"})
        return NotImplemented


class _Unpickler(pickle.Unpickler):
    """Finds the classes of snapshots written by earlier layouts of the code (`_MOVED`)."""

    def find_class(self, module: str, name: str) -> Any:
        module, name = _MOVED.get((module, name), (module, name))
        return super().find_class(module, name)
