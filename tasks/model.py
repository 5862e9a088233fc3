"""Model steps: build the initial model, train it (resumable), calibrate its scores."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from multitask.config import EvaluateConfig, ModelConfig, TrainConfig
from multitask.records import ModelRef, SnapshotRef, TrainedModelRef
from tasks import retries
from tasks.caching import output_dir


@task(name="build_model", result_serializer="json")
def build_model(model: ModelConfig, num_classes: int, image_size: int) -> ModelRef:
    from multitask.model import save_initial

    folder = output_dir("build_model", model=model, num_classes=num_classes, image_size=image_size)
    return save_initial(model, num_classes, image_size, folder / "initial.keras")


@task(name="train_model", result_serializer="json", **retries.TRAINING)
def train_model(model: ModelRef, snapshot: SnapshotRef, train_config: TrainConfig) -> TrainedModelRef:
    from multitask.train import train

    # The run folder is named by this step's cache key, so a retry or a re-run after a
    # crash finds the BackupAndRestore state of the same training.
    run_dir = output_dir("train_model", model=model, snapshot=snapshot, train_config=train_config)
    progress = create_progress_artifact(progress=0.0, key="training-progress", description=(
        f"Training: share of the {train_config.epochs} epochs at most"
        + (f" or of the {train_config.max_minutes} minutes" if train_config.max_minutes else "")))
    trained = train(model, snapshot, train_config, run_dir,
                    on_progress=lambda percent: update_progress_artifact(progress, percent))
    update_progress_artifact(progress, 100.0)  # also when it stopped early, on a plateau
    return trained


@task(name="calibrate_model", result_serializer="json", **retries.IO)
def calibrate_model(trained: TrainedModelRef, snapshot: SnapshotRef,
                    evaluate_config: EvaluateConfig) -> TrainedModelRef:
    """The trained model with its label scores calibrated on the validation split (`evaluate.calibrate`)."""
    from multitask.calibration import calibrate

    out = output_dir("calibrate_model", trained=trained, snapshot=snapshot, batch_size=evaluate_config.batch_size)
    return calibrate(trained, snapshot, evaluate_config.batch_size, out)
