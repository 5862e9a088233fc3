"""compare on Dask: a scheduler and two workers started as processes of their own, on loopback.

Each training runs alone in a worker process, so two at once give exactly what one at a time gives.
"""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from flows.compare import run_compare

from helpers import tiny_config

VARIANTS = ["label-only", "uncertainty"]


def _evaluations(home: Path) -> list[dict]:
    """Every evaluation's test metrics (losses to 6 decimals), in a fixed order."""
    reports = [json.loads(p.read_text()) for p in (home / "steps" / "evaluate_model").glob("*/metrics.json")]
    keys = ("loss", "label_loss", "box_loss", "accuracy", "mean_iou", "iou50")
    return sorted(({k: report[k] for k in keys} for report in reports), key=lambda m: json.dumps(m))


def _trainings(home: Path) -> list[dict]:
    """Every training's epochs (numbers only, no timings) and why it stopped, in a fixed order."""
    histories = [json.loads(p.read_text()) for p in (home / "steps" / "train_model").glob("*/history.json")]
    runs = [{"stop_reason": h["stop_reason"], "best_epoch": h["best_epoch"],
             "epochs": [{k: v for k, v in e.items() if not k.endswith("_seconds")} for e in h["epochs"]]}
            for h in histories]
    return sorted(runs, key=lambda r: json.dumps(r))


def _without_times(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "train_seconds"} for row in rows]


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.graph  # the thread's trainings compile as the workers' do: eager steps round differently
def test_two_dask_workers_at_once_give_exactly_what_one_thread_gives(dask_cluster, tmp_path, monkeypatch):
    address, dask_home = dask_cluster
    config = tiny_config("train.epochs=2", preset="seed")
    monkeypatch.setenv("MULTITASK_HOME", str(dask_home))
    on_dask = run_compare(config, seeds=1, variants=VARIANTS, concurrency=2, runner="dask", dask_address=address)
    monkeypatch.setenv("MULTITASK_HOME", str(tmp_path / "thread-ws"))
    in_order = run_compare(config, seeds=1, variants=VARIANTS, concurrency=1, runner="thread")

    trainings = {k: v for k, v in on_dask["steps"].items() if k.startswith("train_model[")}
    assert len(trainings) == 2 and set(trainings.values()) == {"Completed"}
    worker_logs = (tmp_path / "dask.log").read_text()  # the workers' output, not this process's
    assert worker_logs.count("Task run 'train_model-") >= 2 and "Finished in state Completed" in worker_logs
    # Epoch by epoch first, so that a difference says where it began; the workers' log says what they did.
    assert _trainings(dask_home) == _trainings(tmp_path / "thread-ws"), worker_logs[-6000:]
    assert _without_times(on_dask["rows"]) == _without_times(in_order["rows"])
    assert len(_evaluations(dask_home)) == 2
    assert _evaluations(dask_home) == _evaluations(tmp_path / "thread-ws")


def test_a_dask_address_without_the_dask_runner_is_one_line():
    result = CliRunner().invoke(app, ["compare", "--dask-address", "tcp://127.0.0.1:1"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --dask-address needs --runner dask"
