"""Error kinds that decide what the CLI prints and what the orchestrator retries."""

from __future__ import annotations

import errno
import sqlite3


class UserError(ValueError):
    """Bad input or bad configuration: fail at once with one readable line, never retry."""


class ConfigError(UserError):
    """A configuration value, preset or `--set` key is wrong."""


class DataError(UserError):
    """A dataset spec or its content is wrong."""


class WorkspaceError(UserError):
    """The workspace cannot be created or written."""


# OSError subclasses that describe a wrong path or permission, not a passing fault.
_PERMANENT_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
# A full disk or a read-only file system does not heal in the seconds a retry waits.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT}


def _chain(exc: BaseException):
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def storage_problem(exc: BaseException) -> str | None:
    """One line for a full disk or read-only storage anywhere in the chain, else None."""
    for current in _chain(exc):
        if isinstance(current, OSError) and current.errno in _STORAGE_ERRNOS:
            where = f" while writing {current.filename}" if current.filename else ""
            return f"{current.strerror or current}{where}: free space or choose another MULTITASK_HOME"
        if "No space left on device" in str(current):
            return f"no space left on device: {str(current)[:300]}"
    return None


def is_transient(exc: BaseException) -> bool:
    """True for faults worth retrying: I/O hiccups, dropped connections, a locked database.

    Walks the ``__cause__``/``__context__`` chain, since libraries often wrap the real fault.
    """
    if storage_problem(exc):
        return False
    for current in _chain(exc):
        if isinstance(current, UserError):
            return False
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True
        if "database is locked" in str(current):
            return True
        if isinstance(current, OSError) and not isinstance(current, _PERMANENT_OS_ERRORS):
            return True
        if isinstance(current, sqlite3.OperationalError):
            return "locked" in str(current)
    return False
