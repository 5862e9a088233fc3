"""The files the stack writes under DIR: private files (mode 600, durable), logs that refuse a
link in their place, and the password file initdb reads."""

from __future__ import annotations

import contextlib
import os
import pwd
from collections.abc import Iterator
from pathlib import Path

from stack_output import StackError

from multitask.atomic import sync_dir


def _write_private(path: Path, text: str) -> None:
    """Write a mode-600 file whole and durably (a partial file, fsynced, renamed, the folder
    fsynced): after a power loss the file holds the old text or the new, never nothing."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    partial.rename(path)
    sync_dir(path.parent)


def _open_log(path: Path, owner: pwd.struct_passwd | None) -> int:
    """A descriptor appending to the log `path`, handed to `owner` when given. A link in its place
    is refused (O_NOFOLLOW), so root never writes or chowns a file someone else pointed it at."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise StackError(f"cannot open the log {path}: {e.strerror} (a link there is refused)") from None
    if owner:
        os.fchown(fd, owner.pw_uid, owner.pw_gid)
    return fd


@contextlib.contextmanager
def _password_file(password: str, owner: pwd.struct_passwd | None) -> Iterator[str]:
    """A path that reads `password` for as long as the block runs: an anonymous in-memory file
    (no name in any folder, so nothing to follow or leave behind), readable by `owner`, which a
    child reaches through /proc/self/fd (the child inherits the descriptor)."""
    fd = os.memfd_create("pg_password", 0)  # not MFD_CLOEXEC: initdb inherits it
    try:
        os.write(fd, password.encode())
        os.lseek(fd, 0, os.SEEK_SET)
        if owner:
            os.fchown(fd, owner.pw_uid, owner.pw_gid)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)
