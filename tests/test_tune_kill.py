"""A `multitask tune` process killed in the middle of its study, then the same study run again."""

import os
import signal
import subprocess
import sys
import time

import pytest
from optuna.trial import TrialState

from flows.tune import run_tune
from multitask import search_space, tuning

from helpers import TINY, tiny_config

SETS = [*TINY, "train.epochs=6", "data.train_size=80"]
SPACE = "train.learning_rate=1e-4..1e-2:log"


def _one_ended_and_one_two_epochs_in(name: str) -> bool:
    trials = tuning.trials(name)
    return (any(t.state == TrialState.COMPLETE for t in trials)
            and any(t.state == TrialState.RUNNING and len(t.intermediate_values) >= 2 for t in trials))


@pytest.mark.slow
def test_a_killed_tune_goes_on_where_it_stopped_and_trains_no_ended_trial_again(prefect_server, workspace):
    from prefect.settings import PREFECT_API_URL

    config = tiny_config(*SETS[len(TINY):])
    name = tuning.study_name(config, search_space.parse(SPACE, config))
    child = subprocess.Popen(
        [sys.executable, "-m", "cli", "tune", "--space", SPACE, "--trials", "3",
         *(a for item in SETS for a in ("--set", item))],
        env={**os.environ, "MULTITASK_HOME": str(workspace), "PREFECT_API_URL": PREFECT_API_URL.value()},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not _one_ended_and_one_two_epochs_in(name) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert _one_ended_and_one_two_epochs_in(name), "the child never had a trial done and one two epochs in"
    ended = next(t for t in tuning.trials(name) if t.state == TrialState.COMPLETE)
    histories = {p: p.stat().st_mtime_ns for p in (workspace / "steps" / "train_trial").glob("*/history.json")}
    assert len(histories) == 1

    result = run_tune(config, SPACE, trials=3)

    assert result["trials"] == {"complete": 3, "pruned": 0, "failed": 0}
    trials = tuning.trials(name)
    killed = next(t for t in trials if t.user_attrs.get(tuning.RETRIED))
    [retry] = [t for t in trials if t.user_attrs.get(tuning.RETRY_OF) == killed.number]
    assert retry.params == killed.params and min(retry.intermediate_values) > 1  # resumed, not from epoch 1
    assert [t.datetime_complete for t in trials if t.number == ended.number] == [ended.datetime_complete]
    # one folder per trial that trained: the retry resumed the killed trial's, the ended one was not touched
    folders = list((workspace / "steps" / "train_trial").glob("*/history.json"))
    assert len(folders) == 3 and all(histories[p] == p.stat().st_mtime_ns for p in histories)
