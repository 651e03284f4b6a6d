"""Which processes are the platform's: a record is a PID plus the process's start time, so a reused PID is never
mistaken for ours; a service is its whole process group (a leader may fork workers, as Granian does). Also whether
a port is free, and who holds it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from typing import Any

import psutil


def is_alive(entry: dict[str, Any] | None, popen: subprocess.Popen[bytes] | None = None) -> bool:
    """The recorded process is still ours and not a zombie (`popen`: our handle on it, if we started it)."""
    if not entry:
        return False
    pid = int(entry["pid"])
    if popen is not None and popen.pid == pid and popen.poll() is not None:
        return False
    try:
        p = psutil.Process(pid)
        if abs(p.create_time() - float(entry["create_time"])) > 1.0:
            return False
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def group_members(entry: dict[str, Any]) -> list[psutil.Process]:
    """Processes of the recorded service: its process group (leader may be gone), never younger strangers."""
    pgid = int(entry["pid"])
    started = float(entry["create_time"]) - 1.0
    try:
        leader = psutil.Process(pgid)
        if abs(leader.create_time() - float(entry["create_time"])) > 1.0:
            return []  # the PID was reused: Linux never reuses a live group's id, so our group is gone
    except psutil.Error:
        pass
    members: list[psutil.Process] = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) == pgid and p.create_time() >= started:
                members.append(p)
        except (psutil.Error, OSError):
            continue
    return members


def signal_group(entry: dict[str, Any], sig: int) -> None:
    """Send `sig` to every process of the recorded service's group."""
    for p in group_members(entry):
        with contextlib.suppress(psutil.Error, OSError):
            p.send_signal(sig)


def port_in_use(host: str, port: int) -> bool:
    """True when something listens on host:port (a bind with SO_REUSEADDR fails only for a live listener)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def port_holder(port: int) -> str:
    """The text " by pid N (name)" for the process listening on port (empty when it cannot be found)."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                try:
                    return f" by pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                except psutil.Error:
                    return f" by pid {conn.pid}"
    except (psutil.Error, OSError):
        pass
    return ""
