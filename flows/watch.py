"""watch_flow: has the dataset changed since the last look? If so, emit `multitask.dataset.changed`."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.steps import Steps
from multitask import workspace
from multitask.config import DataConfig
from tasks.watch import announce_change, look_at_dataset


@flow(name="watch")
def watch_flow(dataset: str = DataConfig().dataset) -> dict[str, Any]:
    """Look at a folder dataset (cheaply: names, sizes, times; contents only when those moved)
    and emit the event when its content fingerprint differs from the last look's."""
    workspace.ensure()
    steps = Steps()
    seen = steps.run(look_at_dataset, cached=False, spec=dataset)
    if seen.new is None:
        steps.logger.info("%s is not a folder dataset: nothing on disk changes", dataset)
    if seen.changed:
        steps.run(announce_change, cached=False, seen=seen)
    return {**seen.model_dump(), "steps": steps.states}
