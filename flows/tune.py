"""tune_flow: search a config space with trials of our own training, pruned, at most K at a time."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from prefect.futures import PrefectFuture, as_completed
from prefect.states import State

from flows.runners import task_runner
from flows.steps import Steps
from multitask import file_lock, search_space, tuning, workspace
from multitask.config import RunConfig
from multitask.config_loader import with_values
from multitask.errors import ConfigError
from tasks.model import build_model
from tasks.tune import log_trial, report_study, train_trial


@flow(name="tune")
def tune_flow(config: RunConfig = RunConfig(), space: str = "", trials: int = 12,  # noqa: B008 (a frozen default)
              concurrency: int = 1, timeout_minutes: float | None = None) -> dict[str, Any]:
    """Run the study of (`config`, `space`) until `trials` trials have ended, at most `concurrency`
    at once (the flow's task runner runs them), starting none after `timeout_minutes`.

    Each trial's data and initial model are the cached steps of a training with its config (shared
    by trials that agree on them); its training reports every epoch to the study, which may prune it.
    Writes the best trial's config as TOML for `train --config`."""
    dimensions = search_space.parse(space, config)
    if trials < 1 or concurrency < 1:
        raise ConfigError(f"trials and concurrency must be at least 1, got {trials} and {concurrency}")
    workspace.ensure()
    name = tuning.study_name(config, dimensions)
    steps = Steps()
    with file_lock.exclusive(workspace.locks_dir() / f"{name}.lock", f"the study {name}", steps.logger.info):
        study = tuning.open_study(name, config.train.seed)
        if retried := tuning.retry_dead(study):
            steps.logger.info("%d trial(s) of an earlier run died: queued again", retried)
        _run_trials(study, steps, config, dimensions, trials, concurrency, timeout_minutes)
        steps.run(report_study, cached=False, study=name, rows=tuning.rows(study),
                  keys={d.key: d.log for d in dimensions})
        best = tuning.best(study)
        path = None
        if best is not None:
            path = str(tuning.write_config(
                with_values(config, best["params"]), workspace.root() / "tune" / name / "best.toml",
                f"The best trial ({best['trial']}) of the study {name}: validation score {best['value']:.6f}.\n"
                "multitask train --config THIS_FILE [--preset P]: settings left out are unset or derived from\n"
                "others (the model name, the image size); pass --preset if the study's preset was not `default`."))
        return {"study": name, "best": best, "trials": tuning.counts(study), "config": path}


def _run_trials(study: Any, steps: Steps, config: RunConfig, dimensions: list[search_space.Dimension],
                trials: int, concurrency: int, timeout_minutes: float | None) -> None:
    """Ask for trials and submit them until `trials` have ended; tell the study how each ended."""
    deadline = None if timeout_minutes is None else time.monotonic() + 60 * timeout_minutes
    running: dict[PrefectFuture, int] = {}
    while True:
        open_slots = min(concurrency - len(running), trials - sum(tuning.counts(study).values()) - len(running))
        if deadline is not None and time.monotonic() > deadline:
            open_slots = 0
        if open_slots <= 0 and not running:
            return
        for _ in range(max(open_slots, 0)):
            trial = tuning.ask(study)
            params = {d.key: d.suggest(trial) for d in dimensions}
            steps.logger.info("trial %d: %s", trial.number, params)
            try:
                trial_config = with_values(config, params)
            except ConfigError as exc:  # values valid alone, not together (or between a range's valid ends)
                steps.logger.warning("trial %d failed: %s", trial.number, exc)
                _tell(study, config.model_name, trial.number, None)
                continue
            running[_submit(steps, study.study_name, trial, trial_config)] = trial.number
        if not running:  # every trial asked for failed before it started: ask again
            continue
        done = next(as_completed(list(running)))
        done.wait()  # sets the future's final state (as_completed answers when its run has ended)
        _tell(study, config.model_name, running.pop(done), done.state)


def _submit(steps: Steps, name: str, trial: Any, config: RunConfig) -> PrefectFuture:
    """A trial's data and initial model (cached steps, in the flow), then its training on the task runner."""
    dataset, snapshot = steps.data(config)
    initial = steps.run(build_model, label=f"trial{trial.number}", model=config.model,
                        num_classes=dataset.num_classes, image_size=snapshot.image_size)
    return train_trial.submit(study=name, trial=trial.number, origin=tuning.origin(trial), model=initial,
                              snapshot=snapshot, train_config=config.train)


def _tell(study: Any, model_name: str, number: int, state: State | None) -> None:
    """Tell the study how the trial ended (`state` None: it could not start), then log it to MLflow as a
    child of the study's run."""
    trained = state.result() if state is not None and state.is_completed() else None
    tuning.tell(study, number, trained)
    ended = study.get_trials(deepcopy=False)[number]
    log_trial(study.study_name, model_name, number, ended.params, ended.state.name, ended.value,
              trained.history_path if trained else None)


def run_tune(config: RunConfig, space: str, trials: int, concurrency: int = 1, runner: str = "thread",
             dask_address: str | None = None, timeout_minutes: float | None = None) -> dict[str, Any]:
    """`tune_flow` with its trainings on `runner` (`flows.runners.task_runner`)."""
    return tune_flow.with_options(task_runner=task_runner(concurrency, runner, dask_address))(
        config=config, space=space, trials=trials, concurrency=concurrency, timeout_minutes=timeout_minutes)
