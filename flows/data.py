"""data_flow: build (or reuse) a dataset's records and, unless told not to, check its snapshot."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.steps import Steps
from multitask import workspace
from multitask.config import RunConfig
from tasks.data import build_snapshot, prepare_dataset, validate_dataset


@flow(name="data")
def data_flow(config: RunConfig = RunConfig(), check: bool = True) -> dict[str, Any]:
    """prepare -> (snapshot -> validate); the records and the validation report as JSON-friendly dicts."""
    workspace.ensure()
    steps = Steps()
    dataset = steps.run(prepare_dataset, data=config.data)
    result: dict[str, Any] = {"dataset": dataset.model_dump(), "steps": steps.states}
    if check:
        snapshot = steps.run(build_snapshot, dataset=dataset, data=config.data)
        result["validation"] = steps.run(validate_dataset, snapshot=snapshot).model_dump()
    return result
