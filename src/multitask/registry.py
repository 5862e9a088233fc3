"""Every MLflow call lives here: runs, registered model versions, aliases."""

from __future__ import annotations

import json
import logging
import platform
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import tensorflow as tf
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature

from multitask import workspace
from multitask.config import RunConfig
from multitask.model import load
from multitask.records import EvalReport, ModelVersion, TrainedModelRef

CHALLENGER, CHAMPION = "challenger", "champion"
_TRAIN_FINGERPRINT_TAG = "multitask.train_fingerprint"

logging.getLogger("mlflow").setLevel(logging.WARNING)


def client() -> MlflowClient:
    uri = workspace.tracking_uri()
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def _experiment_id(c: MlflowClient, name: str) -> str:
    """One experiment per model name; artifacts go to the workspace, not `./mlruns`."""
    experiment = c.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return c.create_experiment(name, artifact_location=f"{workspace.artifacts_uri()}/{name}")


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _signature(model: keras.Model) -> ModelSignature:
    """Input: float32 images in [0, 1]; outputs: class probabilities and a [0, 1] box."""
    sample = np.zeros((1, *model.input_shape[1:]), dtype="float32")
    outputs = model.predict(sample, verbose=0)
    return infer_signature(sample, {name: np.asarray(value) for name, value in outputs.items()})


def _existing_version(c: MlflowClient, name: str, train_fingerprint: str) -> ModelVersion | None:
    """The version already registered for this trained model, so a re-run adds no duplicate."""
    try:
        found = c.search_model_versions(f"name = '{name}' and tags.`{_TRAIN_FINGERPRINT_TAG}` = '{train_fingerprint}'")
    except MlflowException:
        return None
    for mv in found:
        return _record(c, name, mv.version, mv.run_id)
    return None


def _record(c: MlflowClient, name: str, version: str, run_id: str) -> ModelVersion:
    mv = c.get_model_version(name, version)
    return ModelVersion(name=name, version=str(version), run_id=run_id, aliases=sorted(mv.aliases),
                        fingerprint=mv.tags.get(_TRAIN_FINGERPRINT_TAG, ""))


def register(
    trained: TrainedModelRef,
    report: EvalReport,
    config: RunConfig,
    tags: dict[str, str],
) -> ModelVersion:
    """Log an MLflow run (params, per-epoch metrics, artifacts, the model) and register it.

    Every new version gets alias `challenger`; the first version of a name also `champion`.
    Registering the same trained model again returns the existing version.
    """
    c = client()
    name = config.registry.model_name
    existing = _existing_version(c, name, trained.fingerprint)
    if existing is not None:
        return existing
    history = json.loads(Path(trained.history_path).read_text())
    model = load(trained.model_path)
    with mlflow.start_run(experiment_id=_experiment_id(c, name)) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in _flatten(config.model_dump()).items()})
        for row in history:
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        mlflow.log_metrics({f"test_{k}": v for k, v in report.metrics.items()})
        mlflow.log_dict(config.model_dump(), "config.json")
        for path in (report.metrics_path, report.curves_path, report.predictions_path, trained.history_path):
            mlflow.log_artifact(path)
        # Explicit requirements: MLflow's inference imports the model in a subprocess (slow).
        requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]
        info = mlflow.keras.log_model(model, name="model", pip_requirements=requirements,
                                      signature=_signature(model))
    version_tags = {
        **tags,
        _TRAIN_FINGERPRINT_TAG: trained.fingerprint,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "python_version": platform.python_version(),
        **{f"test_{k}": str(v) for k, v in report.metrics.items()},
    }
    try:
        c.get_registered_model(name)
    except MlflowException:
        c.create_registered_model(name)
    mv = c.create_model_version(name, source=info.model_uri, run_id=run.info.run_id, tags=version_tags)
    c.set_registered_model_alias(name, CHALLENGER, mv.version)
    if CHAMPION not in c.get_registered_model(name).aliases:
        c.set_registered_model_alias(name, CHAMPION, mv.version)
    return _record(c, name, mv.version, run.info.run_id)


def version_matches(mv: ModelVersion) -> bool:
    """True when the registry still holds this version, made from the same trained model."""
    try:
        found = client().get_model_version(mv.name, mv.version)
    except MlflowException:
        return False
    return found.tags.get(_TRAIN_FINGERPRINT_TAG) == mv.fingerprint


def aliases(name: str, version: str) -> list[str]:
    return sorted(client().get_model_version(name, version).aliases)


def list_models() -> list[dict[str, Any]]:
    """Every registered model with its versions, newest first, and their aliases."""
    c = client()
    rows = []
    for rm in c.search_registered_models():
        for found in sorted(c.search_model_versions(f"name = '{rm.name}'"), key=lambda v: -int(v.version)):
            mv = c.get_model_version(rm.name, found.version)  # search results carry no aliases
            rows.append({"name": rm.name, "version": str(mv.version), "aliases": sorted(mv.aliases),
                         "accuracy": mv.tags.get("test_accuracy"), "mean_iou": mv.tags.get("test_mean_iou"),
                         "created": mv.creation_timestamp})
    return rows

