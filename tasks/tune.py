"""The tuning trial's step: train one trial's config, reporting each epoch's score to its study."""

from __future__ import annotations

from prefect import task

from multitask.config import TrainConfig
from multitask.records import ModelRef, SnapshotRef, TrainedModelRef
from tasks import retries
from tasks.caching import output_dir


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
