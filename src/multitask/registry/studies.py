"""A tuning study in MLflow: one parent run per study, one child run per trial that ended, with
its parameters, its state and its validation curve (in the experiment of the model it tunes)."""

from __future__ import annotations

import time
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from multitask.registry.store import client, experiment_id
from multitask.train import read_history

STUDY_TAG = "multitask.study"
TRIAL_TAG = "multitask.trial"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's UI nests a run under the run this tag names
BATCH = 1000  # the most metrics MLflow takes in one call


def log_trial(study: str, model_name: str, number: int, params: dict[str, Any], state: str,
              value: float | None, history_path: str | None) -> str:
    """The child run of trial `number` (created once: a trial logged before is left as it is)."""
    c = client()
    experiment = experiment_id(c, model_name)
    parent = _parent_run(c, experiment, study)
    found = c.search_runs([experiment], f"tags.`{STUDY_TAG}` = '{study}' and tags.`{TRIAL_TAG}` = '{number}'")
    if found:
        return found[0].info.run_id
    run = c.create_run(experiment, run_name=f"trial {number}",
                       tags={PARENT_TAG: parent, STUDY_TAG: study, TRIAL_TAG: str(number), "state": state})
    now = int(time.time() * 1000)
    metrics = [Metric(key, float(v), now, int(row["epoch"]))
               for row in (read_history(history_path) if history_path else [])
               for key, v in row.items() if key.startswith("val_")]
    metrics += [Metric("objective", value, now, 0)] if value is not None else []
    c.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    for start in range(0, len(metrics), BATCH):
        c.log_batch(run.info.run_id, metrics=metrics[start:start + BATCH])
    c.set_terminated(run.info.run_id, "FINISHED" if state != "FAIL" else "FAILED")
    return run.info.run_id


def _parent_run(c: MlflowClient, experiment: str, study: str) -> str:
    found = c.search_runs([experiment], f"tags.`{STUDY_TAG}` = '{study}' and tags.`{TRIAL_TAG}` = 'study'")
    if found:
        return found[0].info.run_id
    run_id = c.create_run(experiment, run_name=study, tags={STUDY_TAG: study, TRIAL_TAG: "study"}).info.run_id
    c.set_terminated(run_id)  # a folder for the trials' runs: nothing runs in it
    return run_id
