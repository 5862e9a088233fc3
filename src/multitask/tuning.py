"""A tuning study: Optuna's, stored in the workspace, asked for trials and told how they ended.

One study per (config, search space): the same `tune` command run again continues its study, so
finished trials are never trained again. The objective is the validation score training already
keeps (`callbacks.SCORE`, label accuracy + box mean IoU, at the best epoch); the test split is
never looked at. A seeded TPE sampler proposes the values; a median pruner stops a trial whose
best score so far is below the median of the completed trials' scores at the same epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna
import tomli_w
from optuna.trial import TrialState

from multitask import atomic, processes, workspace
from multitask.config import RunConfig
from multitask.config_loader import derived
from multitask.records import TrainedModelRef
from multitask.search_space import Dimension

# An SQLAlchemy URL for the studies (the team stack's PostgreSQL); default: optuna.db in the workspace
STORAGE_ENV = "MULTITASK_TUNE_STORAGE"
# The median pruner prunes only after 3 trials have completed, and never in a trial's first 2 epochs
# (Optuna skips the steps below n_warmup_steps; a step is an epoch, counted from 1): the score of a
# model that has seen the data once or twice says little about where it ends.
PRUNER = {"n_startup_trials": 3, "n_warmup_steps": 3}
OWNER = "owner"  # user attribute of a trial: the identity of the tune process that asked for it
RETRIED = "retried"  # user attribute of a trial whose process died: its parameters were queued again
RETRY_OF = "retry_of"  # user attribute of the trial queued for it: the first trial of those parameters


def storage() -> optuna.storages.RDBStorage:
    url = os.environ.get(STORAGE_ENV) or f"sqlite:///{workspace.ensure() / 'optuna.db'}"
    # SQLite: wait for another trial's write instead of failing at once (trials write from threads or processes)
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine)


def study_name(config: RunConfig, dimensions: list[Dimension]) -> str:
    """The study of this config and space: `tune-MODEL-HASH`."""
    text = json.dumps([config.model_dump(mode="json"), [asdict(d) for d in dimensions]], sort_keys=True)
    return f"tune-{config.model_name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def open_study(name: str, seed: int) -> optuna.Study:
    """The study `name`, created when new: maximise the score, median pruning, TPE seeded with `seed`
    plus the trials the study already holds (a study continued by a new run does not propose the
    values of its first run again)."""
    optuna.logging.set_verbosity(logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage(), load_if_exists=True, direction="maximize",
                                pruner=optuna.pruners.MedianPruner(**PRUNER))
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.get_trials(deepcopy=False)))
    return study


def trials(name: str) -> list[optuna.trial.FrozenTrial]:
    """The trials of the study `name`, in order; none while it does not exist."""
    try:
        return optuna.load_study(study_name=name, storage=storage()).get_trials()
    except KeyError:
        return []


def ask(study: optuna.Study) -> optuna.trial.Trial:
    """A new trial, marked as this process's (see `retry_dead`)."""
    trial = study.ask()
    trial.set_user_attr(OWNER, processes.identity())
    return trial


def retry_dead(study: optuna.Study) -> int:
    """Trials still marked running whose tune process is gone from this host (killed): each is failed,
    marked `retried`, and its values are queued for the next trial. A trial of a process that still
    runs, or of another host (a shared database), is left to it."""
    dead = [trial for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if OWNER not in trial.user_attrs or processes.is_running(trial.user_attrs[OWNER]) is False]
    store = storage()
    for trial in dead:
        store.set_trial_user_attr(_trial_id(store, study.study_name, trial.number), RETRIED, True)
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={RETRY_OF: origin(trial)})
    return len(dead)


def origin(trial: optuna.trial.BaseTrial) -> int:
    """The number of the trial that first ran these parameters: a retried trial's training resumes its folder."""
    return int(trial.user_attrs.get(RETRY_OF, trial.number))


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials that ended: complete, pruned, failed (a retried trial counts once, as its retry)."""
    ended = {"complete": 0, "pruned": 0, "failed": 0}
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.COMPLETE:
            ended["complete"] += 1
        elif trial.state == TrialState.PRUNED:
            ended["pruned"] += 1
        elif trial.state == TrialState.FAIL and not trial.user_attrs.get(RETRIED):
            ended["failed"] += 1
    return ended


def pruning_reporter(name: str, number: int) -> Callable[[int, float], bool]:
    """For training (`train.train`'s `prune`): report trial `number`'s score after each epoch and
    answer whether to stop. Opens the study from its storage, so it works in any process."""
    store = storage()
    study = optuna.load_study(study_name=name, storage=store, pruner=optuna.pruners.MedianPruner(**PRUNER))
    trial = optuna.trial.Trial(study, _trial_id(store, name, number))

    def prune(epochs: int, score: float) -> bool:
        trial.report(score, epochs)
        return trial.should_prune()

    return prune


def _trial_id(store: optuna.storages.BaseStorage, name: str, number: int) -> int:
    return store.get_trial_id_from_study_id_trial_number(store.get_study_id_from_name(name), number)


def tell(study: optuna.Study, number: int, trained: TrainedModelRef | None) -> None:
    """Tell the study how trial `number` ended: its training (pruned, or its best epoch's validation
    score), or None when it failed."""
    from multitask.callbacks import PRUNED, SCORE  # TensorFlow: not before the command has silenced it
    from multitask.train import read_history

    if trained is None:
        study.tell(number, state=TrialState.FAIL)
    elif trained.stop_reason == PRUNED:
        study.tell(number, state=TrialState.PRUNED)
    else:
        rows = {row["epoch"]: row for row in read_history(trained.history_path)}
        study.tell(number, float(rows[trained.best_epoch][SCORE]))


def rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial that ended or runs: number, state, score (a pruned trial's last), epochs, values;
    numbers to 4 significant digits, for people."""
    return [{"trial": t.number, "state": t.state.name.lower(), "value": _rounded(t.value),
             "epochs": len(t.intermediate_values), **{k: _rounded(v) for k, v in t.params.items()}}
            for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(RETRIED)]


def _rounded(value: Any) -> Any:
    return float(f"{value:.4g}") if isinstance(value, float) else value


def best(study: optuna.Study) -> dict[str, Any] | None:
    """The best complete trial as `{"params", "value", "trial"}`, or None before one completed."""
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return None
    trial = study.best_trial
    return {"params": trial.params, "value": trial.value, "trial": trial.number}


def write_config(config: RunConfig, path: Path, header: str) -> Path:
    """`config` as a TOML file for `--config`, written whole or not at all. Settings that are unset
    (`None`) are left out, and so are the model name and the image size where they are the ones
    derived from the dataset and the model preset: `--config` derives them again."""
    tree = config.model_dump(mode="json", exclude=derived(config))
    text = "".join(f"# {line}\n" for line in header.splitlines()) + "\n" + tomli_w.dumps(_without_none(tree))
    return atomic.write_bytes(path, text.encode())


def _without_none(tree: dict[str, Any]) -> dict[str, Any]:
    return {section: {k: v for k, v in values.items() if v is not None} for section, values in tree.items()}
