"""tune on Dask: the trials of a study trained in two worker processes at once, against one thread."""

import pytest

from flows.tune import run_tune
from multitask import tuning

from helpers import tiny_config

SPACE = "train.learning_rate=1e-4..1e-2:log, train.seed=0..9"


def _trials(name: str) -> list[tuple]:
    """Each trial's number, state, parameters, score and the scores it reported per epoch, in order."""
    return [(t.number, t.state.name, t.params, t.value, t.intermediate_values)
            for t in tuning.trials(name)]


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.graph  # the thread's trainings compile as the workers' do: eager steps round differently
def test_dask_workers_give_the_trials_one_thread_gives(dask_cluster, tmp_path, monkeypatch):
    """Fewer trials than the pruner and the sampler's random start need, so the trials cannot depend
    on which finished first: the same seed proposes the same values, the same values train alike."""
    address, dask_home = dask_cluster
    config = tiny_config("train.epochs=2", preset="seed")
    monkeypatch.setenv("MULTITASK_HOME", str(dask_home))
    on_dask = run_tune(config, SPACE, trials=2, concurrency=2, runner="dask", dask_address=address)
    on_dask_trials = _trials(on_dask["study"])
    monkeypatch.setenv("MULTITASK_HOME", str(tmp_path / "thread-ws"))
    in_order = run_tune(config, SPACE, trials=2, concurrency=1)

    assert on_dask["trials"] == {"complete": 2, "pruned": 0, "failed": 0}
    assert "Task run 'train_trial-" in (tmp_path / "dask.log").read_text()  # the workers trained
    assert all(len(trial[4]) == 2 for trial in on_dask_trials)  # the workers reported every epoch
    assert on_dask_trials == _trials(in_order["study"])
    assert on_dask["best"] == in_order["best"]
