"""Model steps: build the initial model, then train it (resumable)."""

from __future__ import annotations

from prefect import task

from multitask import atomic
from multitask.config import ModelConfig, TrainConfig
from multitask.fingerprint import hash_file
from multitask.model import build_model as make_model
from multitask.records import ModelRef, SnapshotRef, TrainedModelRef
from multitask.train import train
from tasks import retries
from tasks.caching import output_dir


@task(name="build_model", result_serializer="json")
def build_model(model: ModelConfig, num_classes: int, image_size: int) -> ModelRef:
    keras_model = make_model(model, num_classes, image_size)
    path = output_dir("build_model", model=model, num_classes=num_classes, image_size=image_size) / "initial.keras"
    atomic.write_with(path, keras_model.save)
    return ModelRef(path=str(path), preset=model.preset, params=keras_model.count_params(),
                    fingerprint=hash_file(path))


@task(name="train_model", result_serializer="json", **retries.TRAINING)
def train_model(model: ModelRef, snapshot: SnapshotRef, train_config: TrainConfig) -> TrainedModelRef:
    # The run folder is named by this step's cache key, so a retry or a re-run after a
    # crash finds the BackupAndRestore state of the same training.
    return train(model, snapshot, train_config,
                 output_dir("train_model", model=model, snapshot=snapshot, train_config=train_config))
