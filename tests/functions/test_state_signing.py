"""Signed model state (functions/model_state/codec.py, signing.py): only blobs this platform signed, for the expected
domain, model and log position, are ever decompressed or unpickled; everything else is refused and reported."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import lz4.frame
import pytest
import redis
from prometheus_client import REGISTRY

from eventing.domains import get_domain
from functions.model_state import codec, signing
from functions.model_state.codec import StateRefused, decode, encode
from functions.model_state.keys import model_key
from functions.model_state.online_model import OnlineModel
from functions.model_state.replica import ModelReplica
from tests.functions.streams import events
from tests.functions.test_model_state import send


def refused(domain: str, model: str, where: str, reason: str) -> float:
    labels = {"domain": domain, "model": model, "source": where, "reason": reason}
    return REGISTRY.get_sample_value("coelho_model_state_refused_total", labels) or 0.0


def trained(domain_name: str = "tfd", n: int = 50) -> OnlineModel:
    state = OnlineModel.fresh(get_domain(domain_name))
    for i, event in enumerate(events(domain_name, n, seed=5), start=1):
        state.learn_one(i, "record", event, 0)
    return state


class Planted:
    """Creates a file when unpickled: open(path, "w") through pickle's REDUCE."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def planted(kind: str, path: Path) -> bytes:
    """A pickle that creates `path` when loaded: open(path, "w") (kind "open") or os.system("touch path") (kind
    "shell", written opcode by opcode: the fast lane's process guard replaces os.system with an unpicklable one)."""
    if kind == "open":
        return pickle.dumps(Planted(path), protocol=5)
    command = f"touch {path}".encode()
    return b"\x80\x05cos\nsystem\n\x8c" + bytes([len(command)]) + command + b"\x85R."


def signed_pickle(obj: Any, domain: str, model: str, seq: int, raw: bytes | None = None) -> bytes:
    """What an attacker who holds the key could write: a correctly signed blob around any pickle (or `raw`)."""
    payload = bytes(lz4.frame.compress(raw if raw is not None else pickle.dumps(obj, protocol=5)))
    head = codec._head(domain, model, seq)
    return head + codec._tag(head, payload) + payload


def test_round_trip_keeps_the_model() -> None:
    state = trained()
    copy = decode(encode(state), "tfd", state.model_name, state.seq)
    x = get_domain("tfd").features(events("tfd", 1, seed=8)[0])
    assert copy.predict_one(x) == state.predict_one(x)
    assert (copy.seq, copy.events_learned) == (state.seq, state.events_learned)


@pytest.mark.parametrize("where", ["head", "tag", "payload", "last"])
def test_one_flipped_byte_anywhere_is_refused(where: str) -> None:
    state = trained()
    blob = bytearray(encode(state))
    head_len = len(codec._head("tfd", state.model_name, state.seq))
    at = {"head": len(codec.MAGIC) + 3, "tag": head_len + 5, "payload": head_len + 40, "last": len(blob) - 1}[where]
    blob[at] ^= 0x01
    before = sum(refused("tfd", state.model_name, "redis", r) for r in StateRefused.REASONS)
    with pytest.raises(StateRefused) as info:
        decode(bytes(blob), "tfd", state.model_name, state.seq)
    assert info.value.reason in ("bad_signature", "mismatch", "corrupt")
    assert sum(refused("tfd", state.model_name, "redis", r) for r in StateRefused.REASONS) == before + 1


def test_another_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    state = trained()
    blob = encode(state)
    monkeypatch.setenv("COELHO_STATE_KEY", "another-key-of-at-least-thirty-two-characters")
    with pytest.raises(StateRefused) as info:
        decode(blob, "tfd", state.model_name, state.seq)
    assert info.value.reason == "bad_signature"


@pytest.mark.parametrize(
    "expected", [("eta", None, None), (None, "logreg", None), (None, None, 49), (None, None, 51)], ids=str
)
def test_another_domain_model_or_position_is_refused(expected: tuple[Any, Any, Any]) -> None:
    state = trained()  # tfd, default model, seq 50
    with pytest.raises(StateRefused) as info:
        decode(encode(state), *expected)
    assert info.value.reason == "mismatch"


def test_a_blob_that_decompresses_past_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "MAX_RAW_BYTES", 1_000_000)
    bomb = signed_pickle(b"\0" * 5_000_000, "tfd", "logreg", 1)  # 20 KB that inflates to 5 MB
    assert len(bomb) < 100_000
    with pytest.raises(StateRefused) as info:
        decode(bomb, "tfd", "logreg", 1)
    assert info.value.reason == "too_large"
    monkeypatch.setattr(codec, "MAX_BLOB_BYTES", 1000)
    with pytest.raises(StateRefused) as info:
        decode(bomb, "tfd", "logreg", 1)
    assert info.value.reason == "too_large"


@pytest.mark.parametrize("kind", ["open", "shell"])
def test_a_signed_pickle_of_a_disallowed_class_creates_nothing(kind: str, tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    blob = signed_pickle(None, "tfd", "logreg", 1, raw=planted(kind, target))
    with pytest.raises(StateRefused) as info:
        decode(blob, "tfd", "logreg", 1)
    assert info.value.reason == "forbidden_class"
    assert not target.exists()


def test_getattr_cannot_reach_beyond_model_parts() -> None:
    # getattr(OnlineModel, "__init__") would lead to __globals__ and from there anywhere.
    raw = b"\x80\x05cbuiltins\ngetattr\ncfunctions.model_state.online_model\nOnlineModel\n\x8c\x08__init__\x86R."
    with pytest.raises(codec.Forbidden):
        codec._Unpickler(io.BytesIO(raw)).load()
    # A module-level function of an allowed package is not a class either.
    with pytest.raises(codec.Forbidden):
        codec._Unpickler(io.BytesIO(b"\x80\x05criver.utils.math\nsigmoid\n.")).load()
    with pytest.raises(codec.Forbidden):
        codec._Unpickler(io.BytesIO(b"\x80\x05criver.utils.math\nmath.sqrt\n.")).load()


def test_unsigned_blobs_are_refused_unless_the_migration_flag_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    state = trained()
    legacy = bytes(lz4.frame.compress(pickle.dumps(state, protocol=5)))  # as written before signing
    with pytest.raises(StateRefused) as info:
        decode(legacy, "tfd", state.model_name, state.seq)
    assert info.value.reason == "unsigned"
    monkeypatch.setenv(codec.ACCEPT_UNSIGNED_ENV, "1")
    assert decode(legacy, "tfd", state.model_name, state.seq).events_learned == state.events_learned
    with pytest.raises(StateRefused):  # still checked against the position it is stored under
        decode(legacy, "tfd", state.model_name, state.seq + 1)


def test_a_pod_without_the_key_refuses_instead_of_inventing_one(monkeypatch: pytest.MonkeyPatch) -> None:
    blob = encode(trained())
    monkeypatch.delenv("COELHO_STATE_KEY")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    with pytest.raises(StateRefused) as info:
        decode(blob)
    assert info.value.reason == "no_key"
    with pytest.raises(signing.StateKeyMissing):
        encode(trained())


def test_the_embedded_key_is_generated_once_with_mode_0600(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COELHO_STATE_KEY")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("COELHO_DATA_DIR", str(tmp_path))
    blob = encode(trained())
    key_file = tmp_path / signing.KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert signing.state_key() == key_file.read_text().strip().encode()
    assert decode(blob).seq == 50
    monkeypatch.setenv("COELHO_STATE_KEY", "too-short")
    with pytest.raises(signing.StateKeyMissing):
        signing.state_key()


@pytest.mark.parametrize("kind", ["open", "shell"])
def test_a_snapshot_planted_in_redis_is_refused_and_the_replicas_keep_serving(
    redis_url: str, tmp_path: Path, kind: str
) -> None:
    domain = get_domain("tfd")
    stream = events("tfd", 60, seed=4)
    learner = ModelReplica(redis.Redis.from_url(redis_url), domain, role="learner")
    for i, event in enumerate(stream):
        send(learner, event, f"id-{i}")
    target = tmp_path / "pwned"
    client = redis.Redis.from_url(redis_url)
    snapshot = model_key("tfd", learner.model_name, "snapshot")
    # Unsigned, then signed with another key: an attacker with write access to Redis but not the key.
    unsigned = bytes(lz4.frame.compress(planted(kind, target)))
    for blob in (unsigned, b"COELHO-STATE/1\n" + unsigned):
        client.hset(snapshot, mapping={"seq": 1_000, "blob": blob})
        before = refused("tfd", learner.model_name, "redis", "unsigned") + refused(
            "tfd", learner.model_name, "redis", "corrupt"
        )
        follower = ModelReplica(redis.Redis.from_url(redis_url), domain)
        assert not follower.load_snapshot()
        follower.catch_up()  # the log still holds everything: the follower replays it
        after = refused("tfd", learner.model_name, "redis", "unsigned") + refused(
            "tfd", learner.model_name, "redis", "corrupt"
        )
        assert after == before + 1
        assert not target.exists()
        assert follower.state.seq == learner.state.seq == len(stream)
        x = domain.features(stream[0])
        assert follower.predict_one(x)[0] == learner.predict_one(x)[0]
    # A genuine snapshot of another model cannot stand in either.
    other = OnlineModel.fresh(domain, "logreg")
    other.seq = 1_000
    client.hset(snapshot, mapping={"seq": 1_000, "blob": encode(other)})
    before = refused("tfd", learner.model_name, "redis", "mismatch")
    assert not ModelReplica(redis.Redis.from_url(redis_url), domain).load_snapshot()
    assert refused("tfd", learner.model_name, "redis", "mismatch") == before + 1
