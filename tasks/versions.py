"""Steps on a registered model: resolve a reference, read its preprocessing, evaluate it."""

from __future__ import annotations

from typing import Any

from prefect import task

from multitask import registry
from multitask.config import EvaluateConfig
from multitask.records import EvalReport, ModelVersion, SnapshotRef
from tasks import retries
from tasks.caching import output_dir


@task(name="resolve_model", **retries.IO)
def resolve_model(reference: str) -> ModelVersion:
    """The version an alias names now; not cached, since an alias moves."""
    return registry.resolve(reference)


@task(name="model_preprocessing", **retries.IO)
def model_preprocessing(version: ModelVersion) -> dict[str, Any]:
    return registry.preprocessing(version)


@task(name="evaluate_registered", result_serializer="json", **retries.IO)
def evaluate_registered(version: ModelVersion, snapshot: SnapshotRef, evaluate_config: EvaluateConfig) -> EvalReport:
    """A registered version on a snapshot's test split (cached on the version's trained model)."""
    from multitask.evaluate import evaluate

    out = output_dir("evaluate_registered", version=version, snapshot=snapshot, evaluate_config=evaluate_config)
    path, preprocessing = registry.fetch(f"{version.name}/{version.version}", out / "model")
    return evaluate(str(path), snapshot, evaluate_config, out, temperature=preprocessing.get("temperature"))
