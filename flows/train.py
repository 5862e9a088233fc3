"""train_flow: dataset -> snapshot -> model -> fit -> evaluation -> registry."""

from __future__ import annotations

from typing import Any

from prefect import Task, flow, get_run_logger

from multitask import registry, workspace
from multitask.config import RunConfig
from tasks.caching import in_workspace
from tasks.data import build_snapshot, prepare_dataset, validate_dataset
from tasks.evaluate import evaluate_model
from tasks.model import build_model, train_model
from tasks.register import register_model


@flow(name="train", validate_parameters=True)
def train_flow(config: RunConfig = RunConfig()) -> dict[str, Any]:
    """Train, evaluate and register a model; every step is cached on its inputs' content."""
    workspace.ensure()
    steps: dict[str, str] = {}
    logger = get_run_logger()

    def run(step: Task, **params: Any) -> Any:
        logger.info("step %s: started", step.name)
        state = in_workspace(step)(**params, return_state=True)
        steps[step.name] = state.name
        return state.result()

    dataset = run(prepare_dataset, data=config.data)
    snapshot = run(build_snapshot, dataset=dataset, data=config.data)
    run(validate_dataset, snapshot=snapshot)  # fails the flow before training on bad data
    initial = run(build_model, model=config.model, num_classes=dataset.num_classes,
                  image_size=config.data.image_size)
    trained = run(train_model, model=initial, snapshot=snapshot, train_config=config.train)
    report = run(evaluate_model, trained=trained, snapshot=snapshot, evaluate_config=config.evaluate)
    version = run(register_model, trained=trained, report=report, dataset=dataset, config=config)
    return {
        "model": version.name,
        "version": version.version,
        "aliases": registry.aliases(version.name, version.version),
        "metrics": {k: report.metrics[k] for k in ("accuracy", "mean_iou", "iou50", "loss", "label_loss", "box_loss")},
        "steps": steps,
        "run_dir": trained.run_dir,
    }
