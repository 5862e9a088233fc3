"""evaluate_flow: a registered model on a dataset's test split, built at the model's input size."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.steps import Steps
from multitask import workspace
from multitask.config import RunConfig
from multitask.errors import UserError
from multitask.gate import classes_differ
from tasks.versions import evaluate_registered, resolve_model


@flow(name="evaluate")
def evaluate_flow(model: str, config: RunConfig = RunConfig()) -> dict[str, Any]:
    """Resolve `model` (NAME@ALIAS or NAME/VERSION), prepare `config.data` with the model's input
    size and resize policy, refuse other classes, evaluate. Every step is cached like training's."""
    workspace.ensure()
    steps = Steps()
    version = steps.run(resolve_model, cached=False, reference=model)
    dataset, snapshot, needs = steps.data_for(version, config)
    difference = classes_differ(needs.get("class_names", []), dataset.class_names)
    if difference is not None:
        raise UserError(f"cannot evaluate {model} on {config.data.dataset}: the model was {difference}")
    report = steps.run(evaluate_registered, version=version, snapshot=snapshot, evaluate_config=config.evaluate)
    return {"model": model, "version": version.version, "dataset": config.data.dataset, "metrics": report.metrics,
            "slices": report.slices, "calibration": report.calibration, "steps": steps.states}
