"""An exclusive lock on a file (`flock`). The kernel releases it when its process dies, so a lock
is never left behind by a crash and needs no reclaiming; a waiter can say who holds it, since
the holder writes its process identity into the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from multitask import processes

logger = logging.getLogger(__name__)
POLL_S = 0.2


def holder_of(path: Path) -> str:
    """Who holds (or last held) the lock at `path`, in words."""
    try:
        info = json.loads(path.read_bytes() or b"{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return f"process {info.get('pid', '?')} on {info.get('host', '?')}"


@contextlib.contextmanager
def exclusive(path: Path, what: str = "", log: Callable[[str], object] | None = None,
              log_every_s: float = 60.0) -> Iterator[None]:
    """Hold the lock on `path` (created if missing, never through a symbolic link) for the block.

    While it waits, `log` (default: this module's logger) is told every `log_every_s` seconds how
    long it has waited for `what` and who holds it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        _acquire(fd, path, what or str(path), log or logger.warning, log_every_s)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(processes.identity()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def _acquire(fd: int, path: Path, what: str, log: Callable[[str], object], log_every_s: float) -> None:
    start = last_log = time.monotonic()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        now = time.monotonic()
        if now - last_log >= log_every_s:
            last_log = now
            log(f"waiting {now - start:.0f} s for {what}, held by {holder_of(path)}")
        time.sleep(POLL_S)
