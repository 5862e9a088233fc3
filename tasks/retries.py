"""Retry settings: backoff with jitter, and only for transient faults."""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff

from multitask.errors import is_transient


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry OSError, ConnectionError, TimeoutError, a locked database; never bad input."""
    try:
        state.result()
    except Exception as exc:  # the failure we are asked about
        return is_transient(exc)
    return False


# For I/O steps (dataset build, snapshot, registry): waits of about 2, 4, 8 seconds.
IO = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_transient,
}

# Training retries once: BackupAndRestore makes the retry resume from the last epoch.
TRAINING = {**IO, "retries": 1}
