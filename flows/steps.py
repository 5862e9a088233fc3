"""Shared wiring: run a task in the workspace, record its final state, return its result."""

from __future__ import annotations

from typing import Any

from prefect import Task, get_run_logger

from multitask.config import RunConfig
from multitask.records import ModelVersion
from tasks.caching import in_workspace
from tasks.data import build_snapshot, prepare_dataset, validate_dataset
from tasks.evaluate import evaluate_model
from tasks.model import build_model, calibrate_model, train_model
from tasks.versions import model_preprocessing


class Steps:
    """Runs tasks one after another and keeps `{task name: final state name}` for the summary."""

    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.logger = get_run_logger()

    def run(self, step: Task, *, cached: bool = True, label: str = "", **params: Any) -> Any:
        """Run `step`; its state is recorded as `step[label]` when one step runs more than once."""
        name = f"{step.name}[{label}]" if label else step.name
        self.logger.info("step %s: started", name)
        state = (in_workspace(step) if cached else step)(**params, return_state=True)
        self.states[name] = state.name
        return state.result()

    def map(self, step: Task, labels: list[str], **params: Any) -> list[Any]:
        """Map `step` over the list parameters (`unmapped(...)` for the shared ones) on the
        flow's task runner; returns the results in order once all have finished."""
        self.logger.info("step %s: %d mapped runs", step.name, len(labels))
        futures = in_workspace(step).map(**params)
        futures.wait()
        for label, future in zip(labels, futures):
            self.states[f"{step.name}[{label}]"] = future.state.name
        return [future.result() for future in futures]

    def data(self, config: RunConfig):
        """prepare -> snapshot -> validate; returns (dataset, snapshot). Fails before training on bad data."""
        dataset = self.run(prepare_dataset, data=config.data)
        snapshot = self.run(build_snapshot, dataset=dataset, data=config.data)
        self.run(validate_dataset, snapshot=snapshot)
        return dataset, snapshot

    def data_for(self, version: ModelVersion, config: RunConfig):
        """`data` at a registered version's input size and resize policy; returns (dataset, snapshot,
        the version's preprocessing: class names, image size, resize policy)."""
        needs = self.run(model_preprocessing, cached=False, version=version)
        data = config.data.model_copy(update={"image_size": int(needs["image_size"]),
                                              "resize": needs.get("resize", "stretch")})
        dataset, snapshot = self.data(config.model_copy(update={"data": data}))
        return dataset, snapshot, needs

    def train_and_evaluate(self, config: RunConfig, dataset, snapshot):
        """build -> train -> (calibrate) -> evaluate; returns (trained, report)."""
        initial = self.run(build_model, model=config.model, num_classes=dataset.num_classes,
                           image_size=snapshot.image_size)
        trained = self.run(train_model, model=initial, snapshot=snapshot, train_config=config.train)
        if config.evaluate.calibrate:
            trained = self.run(calibrate_model, trained=trained, snapshot=snapshot, evaluate_config=config.evaluate)
        report = self.run(evaluate_model, trained=trained, snapshot=snapshot, evaluate_config=config.evaluate)
        return trained, report
