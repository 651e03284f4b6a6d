"""The key that signs model state: `COELHO_STATE_KEY`, or a key generated once in the embedded platform's data
directory (docs/adr/0090-signed-model-state.md).

Every model blob (Redis snapshots, the MLflow `state.pkl.lz4` artifacts) carries an HMAC-SHA256 over its domain,
model, log position and bytes (functions/model_state/codec.py); this module only finds the key. Standard library
only.

- A cluster sets `COELHO_STATE_KEY` from a Secret (at least 32 characters). A pod without it refuses to sign or
  load any state (`StateKeyMissing`) instead of inventing a key no other pod shares.
- The embedded platform keeps `<data dir>/state.key` (mode 0600, created on first use): every process it starts
  gets COELHO_DATA_DIR and reads that file (a COELHO_STATE_KEY set where `coelho up` runs is inherited and wins). A
  process started by hand outside a cluster finds the same file (COELHO_DATA_DIR, or the project's `.coelho/`).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> first = load_or_create_key_file(folder)
    >>> first == load_or_create_key_file(folder), len(first), oct((folder / KEY_FILE).stat().st_mode & 0o777)
    (True, 64, '0o600')
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("coelho.functions.model_state.signing")

KEY_ENV = "COELHO_STATE_KEY"
KEY_FILE = "state.key"
MIN_KEY_CHARS = 32
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / ".coelho"  # the embedded platform's default


class StateKeyMissing(RuntimeError):
    """No key to sign or verify model state with: the function cannot load or write any."""


def load_or_create_key_file(data_dir: Path) -> str:
    """The key kept in `data_dir/state.key`, created (64 hex characters, mode 0600) when there is none. Several
    processes may start at once: the file is written aside and linked into place, so each reads a whole key."""
    path = Path(data_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        aside = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        try:
            os.link(aside, path)  # fails if another process was first: its key is the one
            log.info("generated the model-state key in %s", path)
        except FileExistsError:
            pass
        finally:
            aside.unlink()
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
        log.warning("%s was readable by others: mode set to 0600", path)
    text = path.read_text().strip()
    if len(text) < MIN_KEY_CHARS:
        raise StateKeyMissing(f"{path} holds no usable key (fewer than {MIN_KEY_CHARS} characters)")
    return text


def key_from(environ: Mapping[str, str]) -> bytes:
    """The signing key for this process's environment (see the module docstring)."""
    value = environ.get(KEY_ENV, "").strip()
    if value:
        if len(value) < MIN_KEY_CHARS:
            raise StateKeyMissing(f"{KEY_ENV} is too short: at least {MIN_KEY_CHARS} characters")
        return value.encode()
    if environ.get("KUBERNETES_SERVICE_HOST"):
        raise StateKeyMissing(f"{KEY_ENV} is not set: mount it from the model-state Secret")
    data_dir = Path(environ.get("COELHO_DATA_DIR") or DEFAULT_DATA_DIR)
    return load_or_create_key_file(data_dir).encode()


_cached: tuple[str | None, str | None, bytes] | None = None


def state_key() -> bytes:
    """This process's key (cached; re-read when COELHO_STATE_KEY or COELHO_DATA_DIR change, e.g. in tests)."""
    global _cached
    marker = (os.environ.get(KEY_ENV), os.environ.get("COELHO_DATA_DIR"))
    if _cached is None or _cached[:2] != marker:
        _cached = (*marker, key_from(os.environ))
    return _cached[2]
