"""`multitask tune`: the search space, and a study of tiny trainings that prunes, keeps to its
concurrency, continues where a run died, trains nothing twice and writes a config that reproduces."""

import json
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from cli import app
from flows.train import train_flow
from flows.tune import run_tune
from multitask import processes, search_space, tuning
from multitask.config import RunConfig
from multitask.config_loader import load_config, with_values
from multitask.train import read_history

from helpers import DEFAULT_MODEL, TINY, tiny_config

# The starting point's model (no batch normalisation): with a learning rate of 1e-9 its validation
# score stays that of the initial model, which the trials at 1e-3 pass within their first epochs.
SPACE = "train.learning_rate=1e-9|1e-3, train.seed=0..5"
STUDY_SETS = ("train.epochs=4", "data.train_size=160", "data.validation_size=50")


def test_a_space_holds_ranges_log_ranges_integer_ranges_and_choices():
    dims = {d.key: d for d in search_space.parse(
        "train.learning_rate=1e-4..3e-3:log, train.box_loss_weight=1..20, train.epochs=2..9, "
        "data.image_size=64|96|128, model.preset=default|mobilenet_v3_small", RunConfig())}
    assert (dims["train.learning_rate"].low, dims["train.learning_rate"].log) == (1e-4, True)
    assert not dims["train.box_loss_weight"].integer and dims["train.epochs"].integer  # by the setting's type
    assert dims["data.image_size"].choices == (64, 96, 128)
    assert dims["model.preset"].choices == ("default", "mobilenet_v3_small")


def test_a_space_file_is_read_as_sections(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text('[train]\nlearning_rate = "1e-4..1e-2:log"\n[data]\nimage_size = [32, 64]\n')
    dims = search_space.parse(str(path), RunConfig())
    assert [(d.key, d.choices or (d.low, d.high)) for d in dims] == [
        ("train.learning_rate", (1e-4, 1e-2)), ("data.image_size", (32, 64))]


@pytest.mark.parametrize(("space", "says"), [
    ("train.lr=1..2", "unknown setting 'train.lr' in the search space"),
    ("train.learning_rate=3e-3..1e-4", "the range '3e-3..1e-4' is empty"),
    ("train.learning_rate=0..1:log", "a log range needs a low end above 0"),
    ("train.learning_rate=1..2:cube", "unknown scale 'cube'"),
    ("data.image_size=60|64", "60 is not a valid value"),
    ("train.epochs=0..5", "0 is not a valid value"),
    ("train.learning_rate", "expected section.key=LOW..HIGH[:log] or section.key=A|B"),
    ("train.learning_rate=1e-3|1e-3", "choices need at least two different values"),
    ("train.seed=1..3, train.seed=4..5", "names a setting twice"),
    (" , ", "names no setting"),
    ("train.max_minutes=1..inf", "must be finite numbers"),
    ("train.augment_flip=0..1", "a yes/no setting takes choices"),
    ("/nonexistent/space.toml", "cannot read search space file /nonexistent/space.toml"),
])
def test_a_bad_space_is_one_line_before_anything_runs(space, says, tmp_path, monkeypatch):
    monkeypatch.setenv("MULTITASK_HOME", str(tmp_path / "untouched"))
    result = CliRunner().invoke(app, ["tune", "--space", space, "--trials", "2"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], result.stderr
    assert not (tmp_path / "untouched").exists()


def test_the_best_config_file_reads_back_to_the_same_config(tmp_path):
    config = tiny_config(DEFAULT_MODEL, "train.learning_rate=0.00123", 'model.stem="strided"')
    path = tuning.write_config(config, tmp_path / "best.toml", "a header\nof two lines")
    assert path.read_text().startswith("# a header\n# of two lines\n")
    assert load_config("default", config_file=path) == config


def test_a_trial_with_another_preset_gets_that_presets_image_size_and_the_file_keeps_it_derived(tmp_path):
    config = with_values(RunConfig(), {"model.preset": "mobilenet_v3_small"})
    assert config.data.image_size == 224
    path = tuning.write_config(config, tmp_path / "best.toml", "")
    assert "image_size" not in path.read_text() and "model_name" not in path.read_text()
    assert load_config("default", config_file=path) == config
    other = load_config("default", config_file=path, overrides={"data": {"dataset": "tfds:oxford_iiit_pet"}})
    assert other.model_name == "multitask-oxford_iiit_pet"


def test_only_running_trials_whose_tune_process_is_gone_are_retried(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTITASK_HOME", str(tmp_path))
    study = tuning.open_study("tune-owners", seed=0)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owners = {"alive": processes.identity(), "gone": {**processes.identity(), "pid": int(gone.stdout)},
              "elsewhere": {**processes.identity(), "host": "another-host"}}
    for owner in owners.values():
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        trial.set_user_attr(tuning.OWNER, owner)
    assert tuning.retry_dead(study) == 1
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.RUNNING, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
    assert study.get_trials()[3].user_attrs[tuning.RETRY_OF] == 1


def _config():
    return tiny_config(*STUDY_SETS)


@pytest.fixture(scope="module")
def study(prefect_server, module_workspace):
    """Three trials that learn, then one that cannot (its learning rate 1e-9), one at a time, so the
    median pruner has its three finished trials when the fourth reports; then a trial left running
    as by a killed run; then the same study run to 6 trials two at a time, then run again, then asked
    for 8 with no time left."""
    config = _config()
    name = tuning.study_name(config, search_space.parse(SPACE, config))
    queued = tuning.open_study(name, config.train.seed)
    for seed, rate in [(0, 1e-3), (1, 1e-3), (2, 1e-3), (0, 1e-9)]:
        queued.enqueue_trial({"train.learning_rate": rate, "train.seed": seed})
    first = run_tune(config, SPACE, trials=4)
    died = tuning.open_study(name, config.train.seed).ask({"train.learning_rate": optuna.distributions.
                                                            CategoricalDistribution([1e-9, 1e-3])})
    second = run_tune(config, SPACE, trials=6, concurrency=2)
    before_third = len(tuning.trials(name))
    third = run_tune(config, SPACE, trials=6, concurrency=2)
    out_of_time = run_tune(config, SPACE, trials=8, timeout_minutes=0)
    return {"name": name, "first": first, "died": died.number, "second": second, "third": third,
            "before_third": before_third, "out_of_time": out_of_time}


def test_a_trial_that_cannot_learn_is_pruned(study):
    assert study["first"]["trials"] == {"complete": 3, "pruned": 1, "failed": 0}
    pruned = [t for t in tuning.trials(study["name"])[:4] if t.state == TrialState.PRUNED]
    assert [t.params["train.learning_rate"] for t in pruned] == [1e-9]
    assert study["first"]["best"]["params"]["train.learning_rate"] == 1e-3


def test_at_most_concurrency_trials_train_at_once_and_they_do_overlap(study):
    later = [t for t in tuning.trials(study["name"]) if t.number > study["died"]]
    assert len(later) == 2
    events = sorted([(t.datetime_start, 1) for t in later] + [(t.datetime_complete, -1) for t in later])
    running, most = 0, 0
    for _, change in events:
        running += change
        most = max(most, running)
    assert most == 2


def test_a_trial_whose_run_died_is_retried_and_counted_once(study):
    trials = {t.number: t for t in tuning.trials(study["name"])}
    died = trials[study["died"]]
    assert died.state == TrialState.FAIL and died.user_attrs[tuning.RETRIED]
    retried = [t for t in trials.values() if t.user_attrs.get(tuning.RETRY_OF) == died.number]
    assert len(retried) == 1 and retried[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retried[0].params["train.learning_rate"] == died.params["train.learning_rate"]
    assert sum(study["second"]["trials"].values()) == 6 and study["second"]["trials"]["failed"] == 0


def test_running_a_finished_study_again_or_out_of_time_trains_nothing(study):
    assert len(tuning.trials(study["name"])) == study["before_third"]
    assert study["out_of_time"]["trials"] == study["third"]["trials"]  # 8 asked for, none started after 0 minutes
    assert study["third"]["best"] == study["second"]["best"] and study["third"]["trials"] == study["second"]["trials"]


def test_the_best_config_reproduces_the_best_trials_validation_score(study):
    best = study["third"]["best"]
    config = load_config("default", config_file=study["third"]["config"])
    assert config.train.learning_rate == best["params"]["train.learning_rate"]
    summary = train_flow(config=config)
    history = read_history(f"{summary['run_dir']}/history.json")
    assert max(row["val_score"] for row in history) == pytest.approx(best["value"], abs=1e-6)


def test_the_json_line_has_the_best_trial_its_counts_and_the_config(study):
    sets = [a for item in [*TINY, *STUDY_SETS] for a in ("--set", item)]  # `_config()`
    result = CliRunner().invoke(app, ["tune", "--space", SPACE, "--trials", "6", "--json", *sets])
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line == {"study": study["name"], "best": study["third"]["best"], "trials": study["third"]["trials"],
                    "config": study["third"]["config"]}


def test_each_ended_trial_is_a_child_run_of_the_studys_run_in_mlflow(study):
    from multitask import registry
    from multitask.registry.studies import PARENT_TAG, STUDY_TAG, TRIAL_TAG

    c = registry.client()
    runs = c.search_runs([c.get_experiment_by_name(_config().model_name).experiment_id],
                         f"tags.`{STUDY_TAG}` = '{study['name']}'")
    parents = [r for r in runs if r.data.tags[TRIAL_TAG] == "study"]
    children = {int(r.data.tags[TRIAL_TAG]): r for r in runs if r.data.tags[TRIAL_TAG] != "study"}
    assert len(parents) == 1 and all(r.data.tags[PARENT_TAG] == parents[0].info.run_id for r in children.values())
    ended = {t.number: t for t in tuning.trials(study["name"]) if not t.user_attrs.get(tuning.RETRIED)}
    assert set(children) == set(ended)
    for number, trial in ended.items():
        run = children[number]
        assert run.data.tags["state"] == trial.state.name
        assert run.data.params["train.learning_rate"] == str(trial.params["train.learning_rate"])
        curve = c.get_metric_history(run.info.run_id, "val_score")
        assert [m.step for m in curve] == sorted(trial.intermediate_values)


def test_the_trials_and_the_search_are_artifacts_of_the_flow_run(study):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        latest = {artifact.key: artifact for artifact in client.read_latest_artifacts()}
    table = latest["multitask-tune-trials"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert len(rows) == sum(study["third"]["trials"].values())
    assert {"trial", "state", "value", "epochs", "train.learning_rate", "train.seed"} <= set(rows[0])
    assert latest["multitask-tune-search"].data.startswith("![the search](data:image/png;base64,")


def test_values_the_config_refuses_fail_their_trial_and_the_search_goes_on(prefect_server, workspace):
    """64 and 72 are valid sizes for the default model, the sizes between them are not: the seeded
    sampler draws 68, 70 and 69, so every trial fails before it trains, and the run still ends."""
    result = run_tune(tiny_config(DEFAULT_MODEL), "data.image_size=64..72", trials=3)
    assert result["trials"] == {"complete": 0, "pruned": 0, "failed": 3}
    assert result["best"] is None and result["config"] is None
