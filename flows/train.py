"""train_flow: dataset -> snapshot -> validation -> model -> fit -> evaluation -> registry."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.steps import Steps
from multitask import registry, workspace
from multitask.config import RunConfig
from multitask.records import SUMMARY_METRICS, TrainedModelRef
from tasks.register import register_model


def training_summary(trained: TrainedModelRef) -> dict[str, Any]:
    """How long training ran and why it stopped, for the JSON line."""
    return {"epochs": trained.epochs, "best_epoch": trained.best_epoch, "stopped": trained.stop_reason,
            "minutes": round(trained.train_seconds / 60, 2)}


@flow(name="train")
def train_flow(config: RunConfig = RunConfig()) -> dict[str, Any]:
    """Train, evaluate and register a model; every step is cached on its inputs' content."""
    workspace.ensure()
    steps = Steps()
    dataset, snapshot = steps.data(config)
    trained, report = steps.train_and_evaluate(config, dataset, snapshot)
    version = steps.run(register_model, trained=trained, report=report, dataset=dataset, snapshot=snapshot,
                        config=config)
    return {
        "model": version.name,
        "version": version.version,
        "aliases": registry.aliases(version.name, version.version),
        "metrics": {k: report.metrics[k] for k in SUMMARY_METRICS},
        "training": training_summary(trained),
        "steps": steps.states,
        "run_dir": trained.run_dir,
    }
