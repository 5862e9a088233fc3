"""Logging a trained model as an MLflow run and registering it as a model version."""

from __future__ import annotations

import platform
import warnings
from pathlib import Path
from typing import Any

import keras
import mlflow
import tensorflow as tf
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from multitask import workspace
from multitask.config import RunConfig
from multitask.errors import UserError
from multitask.model import input_size, load
from multitask.records import DriftReport, EvalReport, ModelVersion, TrainedModelRef
from multitask.registry.loading import download, keras_file, serving_problem
from multitask.registry.store import client, experiment_id
from multitask.registry.tags import REREGISTERED_FROM, TRAIN_FINGERPRINT_TAG
from multitask.registry.versions import ensure_aliases, find_version, record, resolve
from multitask.serving import COLUMN, LOADER_MODULE
from multitask.train import read_history


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# The served model takes one string column of base64 image bytes (see multitask.serving).
SIGNATURE = ModelSignature(inputs=Schema([ColSpec("string", COLUMN)]))


def log_served_model(keras_path: Path, preprocessing: dict[str, Any]) -> Any:
    """Log the served pyfunc model into the active run: the `.keras` file as its data, loaded by
    `multitask.serving` (no pickled object); `preprocessing` as its config and metadata."""
    # Explicit requirements: MLflow's inference imports the model in a subprocess (slow).
    requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]
    with warnings.catch_warnings():  # an input example would need an image; the signature says the input
        warnings.filterwarnings("ignore", message=".*An input example was not provided", category=UserWarning)
        return mlflow.pyfunc.log_model(
            name="model", loader_module=LOADER_MODULE, data_path=str(keras_path), model_config=preprocessing,
            metadata=preprocessing, signature=SIGNATURE, pip_requirements=requirements)


def register(
    trained: TrainedModelRef,
    report: EvalReport,
    config: RunConfig,
    tags: dict[str, str],
    preprocessing: dict[str, Any],
    first_is_champion: bool = True,
    profile: Path | None = None,
) -> ModelVersion:
    """Log an MLflow run (params, per-epoch metrics, artifacts, the model) and register it.

    Every new version gets alias `challenger`; the first version of a name also `champion`
    unless `first_is_champion` is false (the retrain flow leaves that to the gate).
    `preprocessing` (class names, image size, resize policy) is stored in the model's
    metadata, so prediction maps outputs back to names and pixels. `profile`: the data's
    `profile.json` (the model card's data section, and what drift compares new data with).
    Registering the same trained model again returns the existing version.
    """
    c = client()
    name = config.model_name
    existing = find_version(name, {TRAIN_FINGERPRINT_TAG: trained.fingerprint})
    if existing is not None:  # registered before, maybe by an attempt that died before the aliases
        ensure_aliases(c, name, existing.version, first_is_champion)
        return record(c, name, existing.version, existing.run_id)
    history = read_history(trained.history_path)
    preprocessing = {**preprocessing, "image_size": input_size(trained.model_path)}
    with mlflow.start_run(experiment_id=experiment_id(c, name)) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in _flatten(config.model_dump()).items()})
        for row in history:
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
        mlflow.log_metrics({f"test_{k}": v for k, v in report.metrics.items()})
        mlflow.log_dict(config.model_dump(), "config.json")
        for path in [*report.files, Path(trained.history_path), *([profile] if profile else [])]:
            mlflow.log_artifact(str(path))
        info = log_served_model(Path(trained.model_path), preprocessing)
    version_tags = {
        **tags,
        TRAIN_FINGERPRINT_TAG: trained.fingerprint,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "python_version": platform.python_version(),
        **{f"test_{k}": str(v) for k, v in report.metrics.items()},
    }
    _ensure_registered_model(c, name)
    # model_id: a tracking server refuses a `models:/m-...` source without it (sqlite accepts both)
    mv = c.create_model_version(name, source=info.model_uri, run_id=run.info.run_id, tags=version_tags,
                                model_id=info.model_id)
    ensure_aliases(c, name, mv.version, first_is_champion)
    return record(c, name, mv.version, run.info.run_id)


def log_drift(report: DriftReport, dataset: str) -> str:
    """An MLflow run in the model's experiment holding the drift report and its picture; its id."""
    c = client()
    name = report.against.partition("/")[0]
    with mlflow.start_run(experiment_id=experiment_id(c, name), run_name=f"drift {dataset} vs {report.against}") as run:
        mlflow.set_tags({"multitask.drift": str(report.drift).lower(), "multitask.drift_against": report.against,
                         "multitask.dataset": dataset})
        for path in (report.path, report.picture_path):
            mlflow.log_artifact(path)
    return run.info.run_id

def reregister(reference: str) -> tuple[ModelVersion, ModelVersion]:
    """A version registered with a pickled model, registered again the way versions are now (the
    same `.keras` file, loaded by `multitask.serving`): a new version with the old one's tags,
    which takes over its aliases. Returns (old, new). The caller holds the promotion lock when
    the old version is champion.

    The `.keras` file is loaded in safe mode first, so a model that `predict` refuses is not
    given a new life; nothing of the old model is unpickled.
    """
    old = resolve(reference)
    name, ref = old.name, f"{old.name}/{old.version}"
    c = client()
    with workspace.scratch("reregister") as tmp:
        local = download(ref, tmp)
        if serving_problem(local, ref) is None:
            raise UserError(f"{ref} is already registered without a pickled model: nothing to do")
        keras_path, preprocessing = keras_file(local, ref)
        load(keras_path, compile=False)
        found = c.get_model_version(name, old.version)
        with mlflow.start_run(experiment_id=experiment_id(c, name), run_name=f"reregister {ref}") as run:
            mlflow.set_tags({REREGISTERED_FROM: ref, "multitask.source_run": found.run_id or ""})
            info = log_served_model(keras_path, preprocessing)
    new = c.create_model_version(name, source=info.model_uri, run_id=run.info.run_id, model_id=info.model_id,
                                 tags={**found.tags, REREGISTERED_FROM: old.version})
    for alias in found.aliases:
        c.set_registered_model_alias(name, alias, new.version)
    return old, record(c, name, new.version, run.info.run_id)


def _ensure_registered_model(c: MlflowClient, name: str) -> None:
    if c.search_registered_models(filter_string=f"name = '{name}'"):
        return
    try:
        c.create_registered_model(name)
    except MlflowException:  # a concurrent run created it first
        if not c.search_registered_models(filter_string=f"name = '{name}'"):
            raise


def run_url(run_id: str) -> str:
    """The run's page in the MLflow UI: the tracking server's, or for the workspace's store the
    one `mlflow ui --backend-store-uri URI` serves (http://127.0.0.1:5000 by default)."""
    c = client()
    base = c.tracking_uri if c.tracking_uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{base.rstrip('/')}/#/experiments/{c.get_run(run_id).info.experiment_id}/runs/{run_id}"
