"""Tuning steps: train one trial, reporting each epoch's score to its study; log a trial to MLflow;
report the study in the flow run's artifacts."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from multitask.config import TrainConfig
from multitask.records import ModelRef, SnapshotRef, TrainedModelRef
from tasks import retries
from tasks.caching import output_dir
from tasks.pictures import inline_png


@task(name="train_trial", result_serializer="json", **retries.TRAINING)
def train_trial(study: str, trial: int, origin: int, model: ModelRef, snapshot: SnapshotRef,
                train_config: TrainConfig) -> TrainedModelRef:
    """Train as `train_model` does, stopping when the study prunes the trial (`stop_reason` "pruned").

    The run folder is named by the study, `origin` (the first trial of these parameters, see
    `tuning.origin`) and the inputs: a trial retried after its process died resumes from its last
    epoch, while two trials that drew the same values train apart."""
    from multitask.train import train
    from multitask.tuning import pruning_reporter

    run_dir = output_dir("train_trial", study=study, origin=origin, model=model, snapshot=snapshot,
                         train_config=train_config)
    return train(model, snapshot, train_config, run_dir, prune=pruning_reporter(study, trial))


@task(name="log_trial", result_serializer="json", **retries.IO)
def log_trial(study: str, model_name: str, number: int, params: dict[str, Any], state: str, value: float | None,
              history_path: str | None) -> str:
    """The trial's MLflow run, a child of the study's (`registry.log_trial`)."""
    from multitask import registry

    return registry.log_trial(study, model_name, number, params, state, value, history_path)


@task(name="report_study", result_serializer="json")
def report_study(study: str, rows: list[dict[str, Any]], keys: dict[str, bool]) -> str:
    """The trials as a table artifact and the search as a picture (`plots.plot_search`), in this flow run."""
    from multitask import workspace
    from multitask.plots import plot_search

    path = plot_search(rows, keys, workspace.root() / "tune" / study / "search.png")
    create_table_artifact(key="multitask-tune-trials", table=rows,
                          description=f"Trials of the study {study}: state, validation score, epochs, values")
    create_markdown_artifact(key="multitask-tune-search", markdown=inline_png(path, "the search"),
                             description=f"The study {study}: best validation score over trials, and the score "
                             "against each searched setting")
    return str(path)
