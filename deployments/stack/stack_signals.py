"""Ending the stack's processes: each service leads a process group of its own."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from Linux's /proc (none found elsewhere)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # after "pid (name)": state, ppid
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        if parent == pid:
            children.append(int(stat.parent.name))
    return children


def _end(groups: list[int], reap: Callable[[], None]) -> None:
    """SIGTERM to each process group, SIGKILL after 20 s to those still there. A group seen gone is
    not signalled again: its number may name another group by then."""
    _signal(groups, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while groups and time.monotonic() < deadline:
        time.sleep(0.2)
        reap()
        groups = [group for group in groups if _alive(group)]
    _signal(groups, signal.SIGKILL)


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _signal(groups: list[int], sig: signal.Signals) -> None:
    for group in groups:
        try:
            os.killpg(group, sig)
        except ProcessLookupError:  # ended meanwhile
            pass
