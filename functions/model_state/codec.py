"""The snapshot codec: an `OnlineModel` to signed bytes and back, as Redis snapshots and MLflow artifacts hold it.

A blob is `MAGIC | domain | model | seq | HMAC-SHA256 tag | lz4 frame of a pickle (protocol 5)`; the tag covers
everything but itself, with the key of `functions.model_state.signing` (docs/adr/0090-signed-model-state.md).
`decode` checks, in this order and before anything is decompressed or unpickled: the size, the tag, then that the
domain, model and log position are the ones the caller expects (a snapshot of one model cannot stand in for another,
nor for another position). Then it decompresses with a size limit and unpickles with an allow-list of classes
(River's model components, the project's model state, a few standard-library types). A blob that fails any check is
refused: `StateRefused`, a log line and `coelho_model_state_refused_total{domain,model,source,reason}`; it is never
loaded. Blobs written before signing (plain lz4) are refused too, unless COELHO_STATE_ACCEPT_UNSIGNED=1 (a one-time
migration: they are then loaded through the same allow-list and size limit, counted, and replaced by signed ones
at the next snapshot or checkpoint).

River's distributions carry a random generator (`_rng`) that is never used while learning or predicting; dropping
it is ~95% of a tree's pickle (measured: an adaptive random forest 82 MB -> 4 MB, same predictions after).
Snapshots written before the model state became a package (class `functions.model_state.ModelState`) still load.

    >>> from eventing.domains import ETA
    >>> from functions.model_state.online_model import OnlineModel
    >>> blob = encode(OnlineModel.fresh(ETA))
    >>> decode(blob, "eta", ETA.default_model, 0).model_name == ETA.default_model
    True
    >>> decode(blob[:-1] + bytes([blob[-1] ^ 1]), "eta", ETA.default_model, where="test")
    Traceback (most recent call last):
    ...
    functions.model_state.codec.StateRefused: eta/log_linear_regression (test): refused, bad_signature: the HMAC does not match
"""

from __future__ import annotations

import builtins
import collections
import datetime
import functools
import gc
import hashlib
import hmac
import io
import logging
import math
import os
import pickle
import random
import statistics
import struct
from typing import Any

import lz4.frame
from prometheus_client import Counter
from river.proba.base import Distribution

from functions.model_state.online_model import OnlineModel
from functions.model_state.signing import StateKeyMissing, state_key

log = logging.getLogger("coelho.functions.model_state.codec")

MAGIC = b"COELHO-STATE/1\n"
TAG_BYTES = 32
# Largest blob accepted and largest pickle a blob may decompress to (the biggest measured state, an adaptive random
# forest, is ~4 MB compressed and ~10 MB raw).
MAX_BLOB_BYTES = int(os.environ.get("COELHO_STATE_MAX_BYTES", str(256 * 1024 * 1024)))
MAX_RAW_BYTES = int(os.environ.get("COELHO_STATE_MAX_RAW_BYTES", str(1024 * 1024 * 1024)))
ACCEPT_UNSIGNED_ENV = "COELHO_STATE_ACCEPT_UNSIGNED"

REFUSED = Counter(
    "coelho_model_state_refused_total",
    "Model state blobs refused before loading (unsigned, bad signature, wrong model or position, too large, "
    "a class outside the allow-list)",
    ["domain", "model", "source", "reason"],
)
UNSIGNED_LOADED = Counter(
    "coelho_model_state_unsigned_loaded_total",
    "Unsigned model state blobs loaded under COELHO_STATE_ACCEPT_UNSIGNED=1 (migration)",
    ["domain", "model", "source"],
)

# Where classes of older snapshots live now: (module, name) -> (module, name).
_MOVED = {
    ("functions.model_state", "ModelState"): ("functions.model_state.online_model", "OnlineModel"),
    ("functions.model_state", "ClusterProfile"): ("functions.model_state.online_model", "ClusterProfile"),
    ("functions.model_state", "_restore_distribution"): ("functions.model_state.codec", "_restore_distribution"),
    ("functions.drift_detector", "DriftWatch"): ("functions.model_state.drift", "DriftWatch"),
}


class StateRefused(ValueError):
    """A model blob that must not be loaded: `reason` is one of REASONS."""

    REASONS = ("unsigned", "bad_signature", "mismatch", "too_large", "forbidden_class", "corrupt", "no_key")

    def __init__(self, reason: str, detail: str, domain: str = "?", model: str = "?", where: str = "?") -> None:
        super().__init__(f"{domain}/{model} ({where}): refused, {reason}: {detail}")
        self.reason, self.detail = reason, detail


# --- encoding ---------------------------------------------------------------------------------------------------
def _head(domain: str, model: str, seq: int) -> bytes:
    d, m = domain.encode(), model.encode()
    return MAGIC + struct.pack(">H", len(d)) + d + struct.pack(">H", len(m)) + m + struct.pack(">Q", seq)


def _tag(head: bytes, payload: bytes) -> bytes:
    mac = hmac.new(state_key(), head, hashlib.sha256)
    mac.update(payload)
    return mac.digest()


def encode(state: OnlineModel) -> bytes:
    """Signed pickle (protocol 5) + lz4, without the unused random state of River's distributions."""
    buffer = io.BytesIO()
    _SlimPickler(buffer, protocol=5).dump(state)
    payload = bytes(lz4.frame.compress(buffer.getvalue()))
    head = _head(state.domain_name, state.model_name, state.seq)
    return head + _tag(head, payload) + payload


def signed_position(blob: bytes) -> tuple[str, str, int] | None:
    """(domain, model, seq) a signed blob says it holds (NOT verified: `decode` does that), None if unsigned."""
    try:
        return _parse(blob)[0]
    except (ValueError, struct.error):
        return None


def _parse(blob: bytes) -> tuple[tuple[str, str, int], bytes, bytes, bytes]:
    if not blob.startswith(MAGIC):
        raise ValueError("unsigned")
    at = len(MAGIC)
    (n,) = struct.unpack_from(">H", blob, at)
    domain = blob[at + 2 : at + 2 + n].decode()
    at += 2 + n
    (n,) = struct.unpack_from(">H", blob, at)
    model = blob[at + 2 : at + 2 + n].decode()
    at += 2 + n
    (seq,) = struct.unpack_from(">Q", blob, at)
    at += 8
    if len(blob) < at + TAG_BYTES:
        raise ValueError("truncated")
    return (domain, model, seq), blob[:at], blob[at : at + TAG_BYTES], blob[at + TAG_BYTES :]


# --- decoding ---------------------------------------------------------------------------------------------------
def decode(
    blob: bytes,
    domain: str | None = None,
    model: str | None = None,
    seq: int | None = None,
    where: str = "redis",
) -> OnlineModel:
    """The `OnlineModel` of a blob, verified. domain, model, seq: what the caller expects (None: not checked).
    where: what is reading it, the metric's `source` label (redis, mlflow, frozen, pyfunc).
    Raises StateRefused (counted and logged) for anything that is not state this platform signed."""
    labels = (domain or "?", model or "?", where)
    try:
        return _decode(blob, domain, model, seq, where)
    except StateRefused as exc:
        _report(exc, *labels)
        raise
    except StateKeyMissing as exc:
        no_key = StateRefused("no_key", str(exc), *labels)
        _report(no_key, *labels)
        raise no_key from exc


def _report(refused: StateRefused, domain: str, model: str, where: str) -> None:
    REFUSED.labels(domain, model, where, refused.reason).inc()
    log.error("model state refused, not loaded: %s", refused)


def _decode(blob: bytes, domain: str | None, model: str | None, seq: int | None, where: str) -> OnlineModel:
    labels = (domain or "?", model or "?", where)
    blob = bytes(blob)
    if len(blob) > MAX_BLOB_BYTES:
        raise StateRefused("too_large", f"{len(blob)} bytes, more than {MAX_BLOB_BYTES}", *labels)
    if not blob.startswith(MAGIC):
        if os.environ.get(ACCEPT_UNSIGNED_ENV) != "1":
            raise StateRefused("unsigned", f"no signature (written before signing? see {ACCEPT_UNSIGNED_ENV})", *labels)
        state = _unpickle(_decompress(blob, labels), labels)
        UNSIGNED_LOADED.labels(*labels).inc()
        log.warning("%s/%s (%s): loaded an UNSIGNED blob (%s=1)", *labels, ACCEPT_UNSIGNED_ENV)
        _check_position(state, domain, model, seq, labels)
        return state
    try:
        (b_domain, b_model, b_seq), head, tag, payload = _parse(blob)
    except (ValueError, struct.error) as exc:
        raise StateRefused("corrupt", f"unreadable header: {exc}", *labels) from None
    if not hmac.compare_digest(tag, _tag(head, payload)):
        raise StateRefused("bad_signature", "the HMAC does not match", *labels)
    expected = {"domain": domain, "model": model, "seq": seq}
    found = {"domain": b_domain, "model": b_model, "seq": b_seq}
    wrong = [f"{k} {found[k]!r}, expected {v!r}" for k, v in expected.items() if v is not None and found[k] != v]
    if wrong:
        raise StateRefused("mismatch", "; ".join(wrong), *labels)
    state = _unpickle(_decompress(payload, labels), labels)
    _check_position(state, b_domain, b_model, b_seq, labels)
    return state


def _check_position(state: OnlineModel, domain: str | None, model: str | None, seq: int | None, labels: Any) -> None:
    found = (state.domain_name, state.model_name, state.seq)
    for want, have in zip((domain, model, seq), found, strict=True):
        if want is not None and want != have:
            raise StateRefused("mismatch", f"the state holds {found}, signed as {(domain, model, seq)}", *labels)


def _decompress(payload: bytes, labels: tuple[str, str, str]) -> bytes:
    decompressor = lz4.frame.LZ4FrameDecompressor()
    try:
        raw = decompressor.decompress(payload, max_length=MAX_RAW_BYTES + 1)
    except RuntimeError as exc:
        raise StateRefused("corrupt", f"not an lz4 frame: {exc}", *labels) from None
    if len(raw) > MAX_RAW_BYTES or not decompressor.eof and not decompressor.needs_input:
        raise StateRefused("too_large", f"decompresses to more than {MAX_RAW_BYTES} bytes", *labels)
    if not decompressor.eof:
        raise StateRefused("corrupt", "truncated lz4 frame", *labels)
    return bytes(raw)


def _unpickle(raw: bytes, labels: tuple[str, str, str]) -> OnlineModel:
    enabled = gc.isenabled()
    gc.disable()  # 2-4x faster loads of large trees (measured), they hold no reference cycles
    try:
        state = _Unpickler(io.BytesIO(raw)).load()
    except Forbidden as exc:
        raise StateRefused("forbidden_class", str(exc), *labels) from None
    except Exception as exc:  # a signed blob that does not unpickle: a bug or another River version
        raise StateRefused("corrupt", f"does not unpickle: {type(exc).__name__}: {exc}", *labels) from None
    finally:
        if enabled:
            gc.enable()
    if not isinstance(state, OnlineModel):
        raise StateRefused("corrupt", f"holds a {type(state).__name__}, not an OnlineModel", *labels)
    return state


# --- pickling ---------------------------------------------------------------------------------------------------
def _restore_distribution(cls: Any, state: dict[str, Any]) -> Any:
    if not (isinstance(cls, type) and issubclass(cls, Distribution)):
        raise Forbidden(f"_restore_distribution of {cls!r}")
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


class Forbidden(pickle.UnpicklingError):
    """A pickle names something outside the allow-list."""


# River packages whose classes make up models, metrics and their parts. Not allowed: river.datasets, river.stream,
# river.evaluate, river.misc (they read files or the network).
_RIVER_PACKAGES = frozenset(
    [
        "_river_rust",
        "base",
        "cluster",
        "compose",
        "drift",
        "ensemble",
        "feature_extraction",
        "forest",
        "imblearn",
        "linear_model",
        "metrics",
        "multiclass",
        "naive_bayes",
        "neighbors",
        "optim",
        "preprocessing",
        "proba",
        "stats",
        "tree",
        "utils",
        "anomaly",
    ]
)
_PROJECT_MODULES = ("functions.model_state.online_model", "functions.model_state.drift", "functions.model_state.tasks")
# Standard-library names the snapshots use (containers, dates, River's random and statistics helpers).
_STDLIB: dict[tuple[str, str], Any] = {
    ("builtins", n): getattr(builtins, n)
    for n in [
        "dict",
        "list",
        "set",
        "frozenset",
        "tuple",
        "int",
        "float",
        "complex",
        "str",
        "bytes",
        "bytearray",
        "bool",
        "slice",
        "range",
    ]
} | {
    ("collections", "Counter"): collections.Counter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("collections", "deque"): collections.deque,
    ("datetime", "datetime"): datetime.datetime,
    ("datetime", "date"): datetime.date,
    ("datetime", "timedelta"): datetime.timedelta,
    ("datetime", "timezone"): datetime.timezone,
    ("functools", "partial"): functools.partial,
    ("math", "expm1"): math.expm1,  # eta's log-target regression (TargetTransformRegressor's func and inverse)
    ("math", "log1p"): math.log1p,
    ("random", "Random"): random.Random,
    ("statistics", "NormalDist"): statistics.NormalDist,
    ("functions.model_state.codec", "_restore_distribution"): _restore_distribution,
}


def _allowed_module(module: str) -> bool:
    parts = module.split(".")
    return parts[0] == "river" and len(parts) > 1 and parts[1] in _RIVER_PACKAGES or module in _PROJECT_MODULES


def _safe_getattr(obj: Any, name: str) -> Any:
    """`getattr` for bound methods of model parts (River pickles e.g. a splitter's method this way): no dunder
    names, only on instances of allowed classes and of `random.Random` (KMeans keeps its `gauss`)."""
    cls = obj if isinstance(obj, type) else type(obj)
    allowed = cls is random.Random or _allowed_module(getattr(cls, "__module__", ""))
    if not isinstance(name, str) or name.startswith("__") or not allowed:
        raise Forbidden(f"getattr({cls.__module__}.{cls.__qualname__}, {name!r})")
    return getattr(obj, name)


class _Unpickler(pickle.Unpickler):
    """Resolves only allowed names: River model classes, the project's model state, `_STDLIB`; finds the classes of
    snapshots written by earlier layouts of the code (`_MOVED`)."""

    def find_class(self, module: str, name: str) -> Any:
        module, name = _MOVED.get((module, name), (module, name))
        if (module, name) == ("builtins", "getattr"):
            return _safe_getattr
        if (module, name) in _STDLIB:
            return _STDLIB[(module, name)]
        if not _allowed_module(module) or any(p.startswith("__") for p in name.split(".")):
            raise Forbidden(f"{module}.{name} is not an allowed class")
        found = super().find_class(module, name)
        home = getattr(found, "__module__", "") or ""
        if isinstance(found, type) and _allowed_module(home):
            return found
        # A method of an allowed class, by its qualified name (River's splitters pickle one this way).
        owner = name.rpartition(".")[0]
        if owner and callable(found) and _allowed_module(home) and getattr(found, "__qualname__", "") == name:
            return found
        raise Forbidden(f"{module}.{name} is not an allowed class")
