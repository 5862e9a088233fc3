"""Content-keyed caching for our Prefect tasks.

Key = hash(task name, fingerprint of `src/multitask`, each input's content fingerprint): see
`multitask.step_keys.step_key`. Prefect's TASK_SOURCE would only hash the wrapper.
Results are JSON records in the workspace; concurrent runs with the same key are serialised
by file locks, so one computes and the others read its result.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import Task
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.locking.filesystem import FileSystemLockManager
from prefect.results import ResultStore
from prefect.transactions import IsolationLevel

from multitask import atomic, file_lock, processes, workspace
from multitask.errors import is_transient
from multitask.records import ModelVersion
from multitask.step_keys import step_key

logger = logging.getLogger(__name__)
# Waits between attempts to tell whether a cached record is intact while the registry hiccups.
CHECK_WAITS = (1.0, 2.0, 4.0)


def _is_intact(value: Any) -> bool:
    """Files: the record checks itself. A registered version: the registry still holds it."""
    if isinstance(value, ModelVersion):
        from multitask import registry  # MLflow is slow to import; only this check needs it

        return registry.version_matches(value)
    return value.is_intact() if hasattr(value, "is_intact") else True


def _intact_or_unknown(value: Any) -> bool | None:
    """`_is_intact`, retried through transient faults; None when it still cannot be told."""
    for wait in (*CHECK_WAITS, None):
        try:
            return _is_intact(value)
        except Exception as exc:
            if not is_transient(exc):
                raise
            if wait is None:
                logger.warning("cannot check a cached record (%s); keeping it", exc)
                return None
            time.sleep(wait)
    return None


def _drop_if_broken(store: ResultStore, key: str) -> None:
    """A cached record whose files are gone or changed is deleted, so the lookup misses.

    Only a record known to be broken is deleted: when the check itself keeps failing on a
    transient fault (the registry is locked or does not answer), the record stays.
    """
    if not store.exists(key):
        return
    try:
        value = store.read(key).result
    except Exception:  # an unreadable record is broken
        broken = True
    else:
        broken = _intact_or_unknown(value) is False
    if broken:
        (Path(store.result_storage.basepath) / key).unlink(missing_ok=True)


def _describe(info: Any) -> str:
    if not isinstance(info, dict):
        return "an unreadable lock file"
    return f"{info.get('holder', '?')} (process {info.get('pid', '?')} on {info.get('host', '?')})"


class ReclaimingLockManager(FileSystemLockManager):
    """File locks that concurrent runs can read at any time and a dead process cannot leave behind.

    Prefect's `acquire_lock` creates the lock file empty and fills it afterwards: a run that
    reads it in between fails on empty JSON (8 runs started at once on one dataset hit this).
    Here a lock file appears whole, with its holder's process identity (host, PID, start time,
    boot id: `multitask.processes`). Prefect's file locks never expire unless given a hold timeout,
    which its transactions don't pass: a lock whose process is no longer running on this host is
    reclaimed, also when its PID now names another process (a container restarts PIDs at 1).
    Reclaiming is atomic: under a lock of its own, the file is read again and renamed aside only
    if it still names that dead holder, so of several waiters exactly one proceeds and none removes
    a lock another has just taken. A waiter logs who holds the lock every `LOG_EVERY_S` seconds.
    Only Prefect's public methods and its lock file layout (`<directory>/<key>.lock`) are used.
    """

    LOG_EVERY_S = 60.0
    POLL_S = 0.1

    def _path(self, key: str) -> Path:
        return self.lock_files_directory.joinpath(key).with_suffix(".lock")

    def acquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                     hold_timeout: float | None = None) -> bool:
        expiration = None if hold_timeout is None else datetime.now(UTC) + timedelta(seconds=hold_timeout)
        record = {"holder": holder, "expiration": None if expiration is None else str(expiration),
                  **processes.identity()}
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        while not self.is_lock_holder(key, holder):
            if atomic.create_json(self._path(key), record):
                break
            left = None if deadline is None else deadline - time.monotonic()
            if (left is not None and left <= 0) or not self.wait_for_lock(key, left):
                return False
        return True

    def is_locked(self, key: str, use_cache: bool = False) -> bool:
        path = self._path(key)
        info = _read_lock(path)
        if info is not _ABSENT and (not isinstance(info, dict) or processes.is_running(info) is False):
            self._reclaim(path, info)
        return super().is_locked(key, use_cache=use_cache)

    def _reclaim(self, path: Path, seen: Any) -> None:
        """Remove the lock file at `path` if it still holds `seen` (a dead holder's record)."""
        with file_lock.exclusive(self.lock_files_directory / ".reclaim"):
            if _read_lock(path) != seen:  # released, or reclaimed and taken again, since it was read
                return
            aside = path.with_name(f"{path.name}.reclaimed-{os.getpid()}")
            os.replace(path, aside)
            if _read_lock(aside) != seen:  # cannot happen under the lock; never drop a live holder
                os.link(aside, path)
            aside.unlink()
        logger.warning("reclaimed the cache lock %s of %s, which no longer runs", path.stem[:12], _describe(seen))

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        start = last_log = time.monotonic()
        while self.is_locked(key):
            now = time.monotonic()
            if timeout is not None and now - start >= timeout:
                return False
            if now - last_log >= self.LOG_EVERY_S:
                last_log = now
                logger.warning("waiting %.0f s for the cache lock %s, held by %s", now - start, key[:12],
                               _describe(_read_lock(self._path(key))))
            time.sleep(self.POLL_S)
        return True


_ABSENT = object()


def _read_lock(path: Path) -> Any:
    """The lock file's record; `_ABSENT` when there is none; None when it is not JSON (left by a
    writer killed between Prefect's own create and fill)."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return _ABSENT
    except ValueError:
        return None


@dataclass
class ContentKey(CachePolicy):
    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str:
        key = step_key(task_ctx.task.name, inputs)
        _drop_if_broken(task_ctx.result_store, key)
        return key


def in_workspace(task: Task) -> Task:
    """The task with its cache, results and locks in the current workspace.

    Bound at run time, not import time, because the workspace comes from the environment.
    """
    policy = ContentKey().configure(
        isolation_level=IsolationLevel.SERIALIZABLE,
        lock_manager=ReclaimingLockManager(lock_files_directory=workspace.locks_dir()),
    )
    return task.with_options(cache_policy=policy, result_storage=workspace.prefect_results_dir())


def output_dir(step: str, **inputs: Any) -> Path:
    """A step's own output folder, named by its cache key: computed from the step's name and
    inputs (as its cache policy does), so it needs no Prefect context and `.fn()` works too."""
    return workspace.step_dir(step, step_key(step, inputs))
