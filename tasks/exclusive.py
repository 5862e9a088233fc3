"""One at a time per registered model: its promotions, and its retrains.

Where a Prefect server runs (`PREFECT_API_URL`), the lock is a global concurrency limit of one
slot on that server, named for the model, so every worker and every person promoting by hand
shares it, whatever machine or workspace they use. A slot is held under a lease the holder
renews: a killed holder's slot frees itself when the lease runs out (`LEASE_S`). Without a server
(a local run, whose Prefect server is a temporary one of its own process) the lock is a file in
the workspace (`multitask.file_lock`), which the kernel releases when its process dies; it says
so when the registry is a shared server, whose other users that file does not reach.
A waiter says every minute what it waits for.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Literal

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.exceptions import MissingContextError, ObjectAlreadyExists
from prefect.logging import get_run_logger
from prefect.settings import get_current_settings

from multitask import file_lock, workspace

Kind = Literal["promote", "retrain"]
LEASE_S = 60.0  # a killed holder's slot is free again within this
LOG_EVERY_S = 60.0
logger = logging.getLogger(__name__)


def limit_name(kind: Kind, model_name: str) -> str:
    return f"multitask-{kind}-{model_name}"


def server_url() -> str | None:
    """The Prefect server every worker shares, or None for a temporary local one."""
    return get_current_settings().api.url


@contextlib.contextmanager
def one_at_a_time(kind: Kind, model_name: str) -> Iterator[None]:
    """Hold the model's `kind` lock for the block (see the module's docstring)."""
    what = f"the {kind} lock of {model_name}"
    if server_url() is None:
        if workspace.tracking_uri().startswith(("http://", "https://", "databricks")):
            _say(f"{what} is a file in this workspace, but the registry ({workspace.tracking_uri()}) is shared: "
                 "set PREFECT_API_URL to the team's Prefect server so that every promotion takes one lock")
        with file_lock.exclusive(workspace.locks_dir() / f"{limit_name(kind, model_name)}.lock", what, _say,
                                 LOG_EVERY_S):
            yield
        return
    name = limit_name(kind, model_name)
    _ensure_limit(name)
    # A retrain holds its lock for hours: a renewal that fails once must not cancel it.
    with _slot(name, what, strict_renewal=kind == "promote"):
        yield


@contextlib.contextmanager
def _slot(name: str, what: str, strict_renewal: bool) -> Iterator[None]:
    start = time.monotonic()
    with contextlib.ExitStack() as held:
        while True:
            try:
                held.enter_context(concurrency(name, occupy=1, timeout_seconds=LOG_EVERY_S, strict=True,
                                               lease_duration=LEASE_S, raise_on_lease_renewal_failure=strict_renewal))
                break
            except TimeoutError:
                _say(f"waiting {time.monotonic() - start:.0f} s for {what} (Prefect concurrency limit {name!r} "
                     f"on {server_url()}): another run holds it")
        yield


def _ensure_limit(name: str) -> None:
    """Create the one-slot limit unless it exists (a concurrent run may create it first)."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    with get_client(sync_client=True) as client:
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        except ObjectAlreadyExists:
            pass


def _say(message: str) -> None:
    """Into the run's log when there is a run (the UI shows it), else this module's logger."""
    try:
        get_run_logger().warning(message)
    except MissingContextError:  # no flow or task run here (e.g. `multitask models promote`)
        logger.warning(message)
