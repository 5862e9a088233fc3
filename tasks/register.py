"""Registration step: an MLflow run and a registered model version with its lineage tags."""

from __future__ import annotations

from prefect import runtime, task

from multitask import registry
from multitask.config import RunConfig
from multitask.fingerprint import library_fingerprint, of_value
from multitask.records import DatasetRef, EvalReport, ModelVersion, TrainedModelRef
from tasks import retries


@task(name="register_model", result_serializer="json", **retries.IO)
def register_model(trained: TrainedModelRef, report: EvalReport, dataset: DatasetRef, config: RunConfig) -> ModelVersion:
    tags = {
        "data_fingerprint": dataset.fingerprint,
        "config_fingerprint": of_value(config),
        "code_fingerprint": library_fingerprint(),
        "dataset": dataset.spec,
        "prefect_flow_run_id": str(runtime.flow_run.id or ""),
    }
    return registry.register(trained, report, config, tags)
