"""Registration step: an MLflow run and a registered model version with its lineage tags."""

from __future__ import annotations

from prefect import runtime, task

from multitask import registry
from multitask.config import RunConfig
from multitask.records import DatasetRef, EvalReport, ModelVersion, TrainedModelRef
from tasks import retries


@task(name="register_model", result_serializer="json", **retries.IO)
def register_model(trained: TrainedModelRef, report: EvalReport, dataset: DatasetRef, config: RunConfig,
                   first_is_champion: bool = True) -> ModelVersion:
    # The class names themselves are in the model's metadata (`registry.preprocessing`).
    tags = {**registry.lineage_tags(dataset, config), "dataset": dataset.spec,
            "num_classes": str(dataset.num_classes), "prefect_flow_run_id": str(runtime.flow_run.id or "")}
    preprocessing = {"class_names": dataset.class_names, "resize": config.data.resize}  # + the model's input size
    return registry.register(trained, report, config, tags, preprocessing, first_is_champion)
