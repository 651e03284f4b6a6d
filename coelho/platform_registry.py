"""Every platform running on this machine, whatever its data directory: each running platform leaves a note naming
its data directory in a registry (`registry_dir()`), so `coelho status` and `down` run with another COELHO_DATA_DIR
can say where the running one is (`other_platforms`); the processes holding this platform's ports tell too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import psutil

from coelho.processes import is_alive, port_in_use
from coelho.settings import Settings


def registry_dir() -> Path:
    """Where each running platform leaves a note naming its data directory (one file per data dir), so `coelho
    status` and `down` run with another COELHO_DATA_DIR can say where the running one is."""
    override = os.environ.get("COELHO_REGISTRY_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "coelho" / "platforms"


def _registry_file(data_dir: Path) -> Path:
    return registry_dir() / (hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:16] + ".json")


def mark_running(data_dir: Path, running: bool) -> None:
    """Add (running) or remove this data directory's note in the registry; never fails the caller."""
    with contextlib.suppress(OSError):
        path = _registry_file(data_dir)
        if running:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"data_dir": str(data_dir.resolve())}))
        else:
            path.unlink(missing_ok=True)


def other_platforms(settings: Settings) -> list[dict[str, Any]]:
    """Platforms running from another data directory: [{"data_dir", "services", "found_by"}].

    Found by the registry notes (their state file lists live processes) and by the processes holding this
    platform's ports (a platform Python process carries COELHO_DATA_DIR; Redis and SeaweedFS name it in argv)."""
    mine = settings.data_dir.resolve()
    found: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(OSError):
        for note in registry_dir().glob("*.json"):
            try:
                data_dir = Path(json.loads(note.read_text())["data_dir"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if data_dir == mine:
                continue
            live = _live_services(data_dir)
            if live:
                found[str(data_dir)] = {"data_dir": str(data_dir), "services": live, "found_by": "registry"}
            else:
                note.unlink(missing_ok=True)  # a platform that ended without saying so
    for name, port in settings.ports.items():
        if not port_in_use(settings.host, port):
            continue
        held = _holder_data_dir(port)
        if held is None or Path(held).resolve() == mine:
            continue
        entry = found.setdefault(held, {"data_dir": held, "services": _live_services(Path(held)), "found_by": "ports"})
        entry.setdefault("ports", []).append(f"{name}={port}")
    return list(found.values())


def _live_services(data_dir: Path) -> list[str]:
    try:
        state = json.loads((data_dir / "run" / "state.json").read_text())
    except (OSError, ValueError):
        return []
    services = state.get("services") if isinstance(state, dict) else None
    if not isinstance(services, dict):
        return []
    return sorted(n for n, e in services.items() if isinstance(e, dict) and is_alive(e))


def _holder_data_dir(port: int) -> str | None:
    """The data directory of the platform process listening on `port`, when it says."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    for conn in conns:
        if not (conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid):
            continue
        try:
            proc = psutil.Process(conn.pid)
            env_dir = proc.environ().get("COELHO_DATA_DIR")
            if env_dir:
                return env_dir
            # Redis rewrites its title but works in its --dir (<data_dir>/redis); SeaweedFS names -dir=<data_dir>/s3
            for value in [proc.cwd(), *(arg.split("=", 1)[-1] for arg in proc.cmdline())]:
                path = Path(value)
                if path.is_absolute() and (path.parent / "run" / "state.json").exists():
                    return str(path.parent)
        except (psutil.Error, OSError):
            return None
    return None
