"""Downloading registered models and loading them safely: Keras safe mode for the `.keras` file,
and for serving, only a model that MLflow loads through this package's own module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import mlflow
from mlflow.exceptions import MlflowException

from multitask import atomic, workspace
from multitask.errors import UserError
from multitask.model import load
from multitask.registry.references import model_uri
from multitask.registry.store import client
from multitask.registry.versions import resolve
from multitask.serving import LOADER_MODULE


def download(reference: str, dest: Path) -> Path:
    """Download a registered model's MLflow model folder into `dest`; return that folder."""
    uri = model_uri(reference)
    client()
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest)))
    except MlflowException as exc:
        raise UserError(f"no registered model {reference!r}: {exc.message}") from exc


def run_files(reference: str) -> set[str]:
    """The names of the files logged at the top of a registered version's run."""
    return {entry.path for entry in client().list_artifacts(resolve(reference).run_id)}


def run_file(reference: str, name: str, dest: Path) -> Path | None:
    """A file logged in the run of a registered version (`metrics.json`, `profile.json`, ...),
    downloaded into `dest`; None when the run holds no such file."""
    if name not in run_files(reference):
        return None
    return Path(client().download_artifacts(resolve(reference).run_id, name, str(dest)))

def fetch(reference: str, dest: Path) -> tuple[Path, dict[str, Any]]:
    """Download a registered model; return its `.keras` file and its preprocessing metadata."""
    return keras_file(download(reference, dest), reference)


def keras_file(local: Path, reference: str) -> tuple[Path, dict[str, Any]]:
    """The `.keras` file in a downloaded MLflow model folder, and its preprocessing metadata."""
    keras_files = sorted(local.rglob("*.keras"))
    if not keras_files:
        raise UserError(f"registered model {reference!r} holds no .keras file")
    return keras_files[0], dict(mlflow.models.Model.load(str(local)).metadata or {})


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


def serving_problem(model_dir: Path, reference: str) -> str | None:
    """Why the MLflow model in `model_dir` must not be served, or None.

    Served, it must load through `multitask.serving` from the installed package: not a pickled
    Python model (unpickling runs whatever code the registry holds), not code shipped in the
    artifacts (models-from-code files, `code` paths put before the installed package).
    """
    conf = mlflow.models.Model.load(str(model_dir)).flavors.get("python_function") or {}
    if "python_model" in conf:
        name, _, version = reference.partition("/")
        return (f"{reference} was registered with a pickled Python model, which serving would unpickle: "
                f"re-register it with `multitask models reregister {name}/{version}`, or retrain")
    if conf.get("loader_module") != LOADER_MODULE or conf.get("code") or "model_code_path" in conf:
        return (f"{reference} is not loaded by {LOADER_MODULE} alone (loader {conf.get('loader_module')!r}, "
                f"code {conf.get('code') or conf.get('model_code_path')!r}): refused")
    return None


def fetch_servable(reference: str, dest: Path) -> Path:
    """Download a registered version's MLflow model into `dest` (replaced whole) and check that it
    may be served (`serving_problem`); the folder is what the scoring server then loads, so what
    was checked is what runs."""
    with atomic.replace_dir(dest) as tmp:
        local = download(reference, tmp)
        if (problem := serving_problem(local, reference)) is not None:
            raise UserError(problem)
        relative = local.relative_to(tmp)
    return dest / relative
