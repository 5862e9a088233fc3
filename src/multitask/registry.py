"""Every MLflow call lives here: runs, registered model versions, aliases."""

from __future__ import annotations

import fcntl
import logging
import os
import platform
import re
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import tensorflow as tf
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from multitask import workspace
from multitask.config import RunConfig
from multitask.errors import UserError
from multitask.model import load
from multitask.fingerprint import digest, library_fingerprint, of_value
from multitask.records import DatasetRef, EvalReport, ModelVersion, TrainedModelRef
from multitask.train import read_history

CHALLENGER, CHAMPION = "challenger", "champion"
_TRAIN_FINGERPRINT_TAG = "multitask.train_fingerprint"
LINEAGE_TAG = "lineage_fingerprint"
# What makes a model; the other sections (evaluate, registry, gate) only judge or name it.
LINEAGE_SECTIONS = ("data", "model", "train")
_SECTION_TAG = "config.{}_fingerprint"

logging.getLogger("mlflow").setLevel(logging.WARNING)


_READY: set[str] = set()  # sqlite stores this process has opened (and so migrated)


def _open_sqlite_store(uri: str) -> MlflowClient:
    """Open a sqlite store under a file lock: its first use runs schema migrations, and two
    processes migrating one new database at once break it ("table _alembic_tmp_... exists")."""
    with open(workspace.ensure() / "mlflow.db.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            c = MlflowClient(tracking_uri=uri)  # opens the tracking store
            c.search_registered_models(max_results=1)  # opens the registry store
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _READY.add(uri)
    return c


def client() -> MlflowClient:
    """A client for the workspace's store (or `$MLFLOW_TRACKING_URI` when the user set it)."""
    user_uri = os.environ.get("MLFLOW_TRACKING_URI")
    uri = workspace.tracking_uri()
    mlflow.set_tracking_uri(uri)  # for mlflow.start_run / log_model, which use the global URI
    if user_uri is None:
        # MLflow also exports the URI to the environment; undo that, or a later workspace in
        # this process (and every subprocess) would silently keep writing to this store.
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    if uri.startswith("sqlite:") and uri not in _READY:
        return _open_sqlite_store(uri)
    return MlflowClient(tracking_uri=uri)


def _experiment_id(c: MlflowClient, name: str) -> str:
    """One experiment per model name; artifacts go to the workspace, not `./mlruns`."""
    experiment = c.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return c.create_experiment(name, artifact_location=f"{workspace.artifacts_uri()}/{name}")
    except MlflowException:  # a concurrent run created it first
        return c.get_experiment_by_name(name).experiment_id


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


def _record(c: MlflowClient, name: str, version: str, run_id: str) -> ModelVersion:
    mv = c.get_model_version(name, version)
    return ModelVersion(name=name, version=str(version), run_id=run_id, aliases=sorted(mv.aliases),
                        fingerprint=mv.tags.get(_TRAIN_FINGERPRINT_TAG, ""))


def register(
    trained: TrainedModelRef,
    report: EvalReport,
    config: RunConfig,
    tags: dict[str, str],
    preprocessing: dict[str, Any],
    first_is_champion: bool = True,
) -> ModelVersion:
    """Log an MLflow run (params, per-epoch metrics, artifacts, the model) and register it.

    Every new version gets alias `challenger`; the first version of a name also `champion`
    unless `first_is_champion` is false (the retrain flow leaves that to the gate).
    `preprocessing` (class names, image size, resize policy) is stored in the model's
    metadata, so prediction maps outputs back to names and pixels.
    Registering the same trained model again returns the existing version.
    """
    c = client()
    name = config.registry.model_name
    existing = find_version(name, {_TRAIN_FINGERPRINT_TAG: trained.fingerprint})
    if existing is not None:  # registered before, maybe by an attempt that died before the aliases
        _ensure_aliases(c, name, existing.version, first_is_champion)
        return _record(c, name, existing.version, existing.run_id)
    history = read_history(trained.history_path)
    model = load(trained.model_path)
    preprocessing = {**preprocessing, "image_size": int(model.input_shape[1])}
    with mlflow.start_run(experiment_id=_experiment_id(c, name)) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in _flatten(config.model_dump()).items()})
        for row in history:
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        mlflow.log_metrics({f"test_{k}": v for k, v in report.metrics.items()})
        mlflow.log_dict(config.model_dump(), "config.json")
        for path in [*report.files, Path(trained.history_path)]:
            mlflow.log_artifact(str(path))
        # Explicit requirements: MLflow's inference imports the model in a subprocess (slow).
        requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]
        info = mlflow.keras.log_model(model, name="model", pip_requirements=requirements,
                                      signature=_signature(model), metadata=preprocessing)
    version_tags = {
        **tags,
        _TRAIN_FINGERPRINT_TAG: trained.fingerprint,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "python_version": platform.python_version(),
        **{f"test_{k}": str(v) for k, v in report.metrics.items()},
    }
    _ensure_registered_model(c, name)
    mv = c.create_model_version(name, source=info.model_uri, run_id=run.info.run_id, tags=version_tags)
    _ensure_aliases(c, name, mv.version, first_is_champion)
    return _record(c, name, mv.version, run.info.run_id)


def _ensure_registered_model(c: MlflowClient, name: str) -> None:
    if c.search_registered_models(filter_string=f"name = '{name}'"):
        return
    try:
        c.create_registered_model(name)
    except MlflowException:  # a concurrent run created it first
        if not c.search_registered_models(filter_string=f"name = '{name}'"):
            raise


def _ensure_aliases(c: MlflowClient, name: str, version: str, first_is_champion: bool = True) -> None:
    """`challenger` on the newest registered version, `champion` on the first one ever.

    Aliases move only after the version and its model exist, so an alias never points at a
    missing model; calling this again after a failure repairs what was left undone.
    """
    aliases = c.get_registered_model(name).aliases
    newest = max(int(v.version) for v in c.search_model_versions(f"name = '{name}'"))
    if int(version) == newest and aliases.get(CHALLENGER) != str(version):
        c.set_registered_model_alias(name, CHALLENGER, str(version))
    if first_is_champion and CHAMPION not in aliases:
        c.set_registered_model_alias(name, CHAMPION, str(version))


def _missing(exc: MlflowException) -> bool:
    return exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)


def version_matches(mv: ModelVersion) -> bool:
    """True when the registry still holds this version, made from the same trained model.

    Only "no such version" means False: any other registry error (a locked database, a server
    that does not answer) propagates, so a caller never takes a hiccup for a missing version.
    """
    try:
        found = client().get_model_version(mv.name, mv.version)
    except MlflowException as exc:
        if _missing(exc):
            return False
        raise
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



_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def parse_reference(reference: str) -> tuple[str, str, str]:
    """`NAME@ALIAS` -> (name, "@", alias); `NAME/VERSION` -> (name, "/", version); else refused."""
    name, at, alias = reference.partition("@")
    if not at:
        name, slash, version = reference.partition("/")
        if not slash or not version.isdigit():
            raise UserError(f"model reference {reference!r}: expected NAME@ALIAS or NAME/VERSION")
    elif not _ALIAS.match(alias):
        raise UserError(f"model alias {alias!r} is not valid (letters, digits, _ and -)")
    if not _NAME.match(name):
        raise UserError(f"model name {name!r} is not valid (letters, digits, _ . and -)")
    return (name, "@", alias) if at else (name, "/", version)


def model_uri(reference: str) -> str:
    return "models:/" + "".join(parse_reference(reference))


def lineage_tags(dataset: DatasetRef, config: RunConfig) -> dict[str, str]:
    """What a model was made from: data, config and code fingerprints.

    `lineage_fingerprint` covers what makes the model (the data's content, the data, model and
    train sections, the library's code); one tag per config section says which settings differ
    when the lineage is the same.
    """
    code = library_fingerprint()
    sections = {name: of_value(getattr(config, name)) for name in type(config).model_fields}
    sections["data"] = digest("DataConfig", config.data.model_dump_json())  # the data's content is below
    lineage = digest(dataset.fingerprint, code, *(sections[name] for name in LINEAGE_SECTIONS))
    return {LINEAGE_TAG: lineage, "data_fingerprint": dataset.fingerprint,
            "config_fingerprint": of_value(config), "code_fingerprint": code,
            **{_SECTION_TAG.format(name): value for name, value in sections.items()}}


def changed_sections(version: ModelVersion, tags: dict[str, str]) -> list[str]:
    """Config sections whose fingerprint differs between a registered version and `tags`."""
    found = client().get_model_version(version.name, version.version).tags
    return sorted(name for name in RunConfig.model_fields
                  if found.get(_SECTION_TAG.format(name)) != tags[_SECTION_TAG.format(name)])


def find_version(name: str, tags: dict[str, str]) -> ModelVersion | None:
    """The newest version of `name` carrying all these tags, if any.

    Errors propagate: a "database is locked" here must fail the attempt (and be retried), not
    pass for "no such version" and, in `register`, add a duplicate.
    """
    c = client()
    clauses = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    found = c.search_model_versions(f"name = '{name}' and {clauses}")
    newest = max(found, key=lambda mv: int(mv.version), default=None)
    return None if newest is None else _record(c, name, newest.version, newest.run_id)


def champion(name: str) -> ModelVersion | None:
    c = client()
    try:
        mv = c.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if _missing(exc):
            return None
        raise
    return _record(c, name, mv.version, mv.run_id)


def class_names(version: ModelVersion) -> list[str]:
    """The class names a registered version was trained on (from its model's metadata).

    Reads only the small `MLmodel` file, not the model.
    """
    location = client().get_model_version_download_uri(version.name, version.version)
    with workspace.scratch("mlmodel") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/MLmodel", dst_path=str(tmp))
        except MlflowException as exc:
            raise UserError(f"{version.name}/{version.version} has no MLmodel file: {exc.message}") from exc
        metadata = mlflow.models.Model.load(local).metadata or {}
    return list(metadata.get("class_names", []))


def fetch(reference: str, dest: Path) -> tuple[Path, dict[str, Any]]:
    """Download a registered model; return its `.keras` file and its preprocessing metadata."""
    uri = model_uri(reference)
    client()
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest)))
    except MlflowException as exc:
        raise UserError(f"no registered model {reference!r}: {exc.message}") from exc
    keras_files = sorted(local.rglob("*.keras"))
    if not keras_files:
        raise UserError(f"registered model {reference!r} holds no .keras file")
    return keras_files[0], dict(mlflow.models.Model.load(str(local)).metadata or {})


def set_tags(name: str, version: str, tags: dict[str, str]) -> None:
    c = client()
    for key, value in tags.items():
        c.set_model_version_tag(name, version, key, value)


def promote(name: str, version: str, tags: dict[str, str]) -> None:
    """Move `champion` to this version and record why (tags) on it."""
    c = client()
    c.get_model_version(name, version)  # fails clearly on an unknown version
    set_tags(name, version, tags)
    c.set_registered_model_alias(name, CHAMPION, version)


def show(reference: str) -> dict[str, Any]:
    """One version's aliases, tags and source, as a JSON-friendly dict."""
    name, kind, which = parse_reference(reference)
    c = client()
    try:
        mv = c.get_model_version_by_alias(name, which) if kind == "@" else c.get_model_version(name, which)
    except MlflowException as exc:
        raise UserError(f"no registered model {reference!r}: {exc.message}") from exc
    mv = c.get_model_version(mv.name, mv.version)
    return {"name": mv.name, "version": str(mv.version), "aliases": sorted(mv.aliases), "run_id": mv.run_id,
            "source": mv.source, "created": mv.creation_timestamp, "tags": dict(mv.tags)}


def load_registered(reference: str) -> tuple[keras.Model, dict[str, Any]]:
    """A registered model, loaded with Keras safe mode on, and its preprocessing metadata.

    A model holding Python code (a Lambda layer) is refused with a clear error.
    """
    with workspace.scratch("fetch") as tmp:
        path, metadata = fetch(reference, tmp)
        try:
            return load(path, compile=False), metadata
        except ValueError as exc:
            if "lambda" in str(exc).lower() or "safe_mode" in str(exc):
                raise UserError(f"refused to load {reference!r}: it holds Python code (a Lambda layer), "
                                f"which Keras safe mode does not deserialise") from exc
            raise


def load_model(reference: str) -> keras.Model:
    return load_registered(reference)[0]
