"""Where a flow's parallel trainings run: threads of this process, or Dask worker processes."""

from __future__ import annotations

from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

from multitask.errors import ConfigError

RUNNERS = ("thread", "dask")


def task_runner(concurrency: int, runner: str = "thread", dask_address: str | None = None) -> Any:
    """A task runner that runs at most `concurrency` trainings at a time: as threads of this process,
    or (`dask`) in Dask worker processes, each training alone in its process, so that TensorFlow's
    process-wide state cannot make results depend on timing."""
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
    if runner not in RUNNERS:
        raise ConfigError(f"unknown runner {runner!r} (known: {', '.join(RUNNERS)})")
    if dask_address is not None and runner != "dask":
        raise ConfigError("--dask-address needs --runner dask")
    return dask_runner(concurrency, dask_address) if runner == "dask" else ThreadPoolTaskRunner(max_workers=concurrency)


def dask_runner(concurrency: int, address: str | None) -> Any:
    """prefect-dask's runner: a local cluster of `concurrency` one-thread worker processes, or
    the cluster at `address` (its workers need this workspace's `MULTITASK_HOME` and `PREFECT_API_URL`)."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:
        raise ConfigError("the dask runner needs prefect-dask: pip install 'multitask[dask]'") from exc
    if address is not None:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": concurrency, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})
