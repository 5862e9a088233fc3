"""Downloading registered models and loading them safely (Keras safe mode)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import mlflow
from mlflow.exceptions import MlflowException

from multitask import workspace
from multitask.errors import UserError
from multitask.model import load
from multitask.registry.references import model_uri
from multitask.registry.store import client


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
