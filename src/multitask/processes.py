"""Which process is which. A PID alone names no process for long: PIDs are reused, a container
starts them at 1 again, and a reboot starts over. An identity is the host, the PID, the
process's start time (clock ticks after boot, Linux's /proc/PID/stat) and the boot id.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """This boot's id (Linux), or "" where the system has none to read."""
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> int | None:
    """When process `pid` started, in clock ticks after boot; None if it does not exist (or on a
    system without /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # "pid (name) state ppid ...": the name may hold spaces and parentheses; field 22 is the start
    return int(stat.rsplit(")", 1)[1].split()[19])


def identity(pid: int | None = None) -> dict[str, Any]:
    """The identity of process `pid` (default: this one), as JSON-friendly fields."""
    pid = os.getpid() if pid is None else pid
    return {"host": socket.gethostname(), "pid": pid, "started": start_ticks(pid), "boot": boot_id()}


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def is_running(recorded: dict[str, Any]) -> bool | None:
    """Whether the process an identity names still runs: True or False on this host, None when it
    cannot be told (the identity names another host, or has no PID).

    A PID that now names a process started at another time, or one recorded before the last boot,
    is not the recorded process. An identity without a start time (written where /proc was not
    readable) falls back to whether the PID exists.
    """
    pid = recorded.get("pid")
    if recorded.get("host") != socket.gethostname() or not isinstance(pid, int) or isinstance(pid, bool):
        return None
    if recorded.get("boot") and boot_id() and recorded["boot"] != boot_id():
        return False
    if recorded.get("started") is not None and start_ticks(pid) is not None:
        return start_ticks(pid) == recorded["started"]
    return _pid_exists(pid)
