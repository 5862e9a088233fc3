"""watch_flow: has the dataset changed since the last look? If so, emit `multitask.dataset.changed`.

Runs every 10 minutes, so it stays light: it imports neither TensorFlow nor MLflow (no
`flows.steps`, whose steps train and evaluate).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from multitask import workspace
from multitask.config import DataConfig
from tasks.watch import announce_change, look_at_dataset, remember_look


@flow(name="watch")
def watch_flow(dataset: str = DataConfig().dataset) -> dict[str, Any]:
    """Look at a folder dataset (cheaply: names, sizes, times; contents only when those moved)
    and emit the event when its content fingerprint differs from the last look's; the look is
    remembered only after that, so a change is announced at least once."""
    workspace.ensure()
    seen = look_at_dataset(dataset)
    if seen.new is None:
        get_run_logger().info("%s is not a folder dataset: nothing on disk changes", dataset)
    if seen.changed:
        announce_change(seen)
    remember_look(seen)
    return seen.model_dump(exclude={"listing"})
