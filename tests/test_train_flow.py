"""The train flow end to end under Prefect's test harness, with a real MLflow store.

The module shares one workspace: `baseline` trains once, and each test re-runs the flow
with one change and checks which steps ran again.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from flows.data import data_flow
from flows.train import train_flow
from multitask import fingerprint, registry
from multitask.calibration import label_logits, softmax
from multitask.datasets import catalog
from multitask.errors import DataError
from multitask.weighting import WeightedMultiTask
from tasks.data import prepare_dataset

from helpers import DATA_STEPS, DEFAULT_MODEL, TINY, no_retry_waits, tiny_config, versions

ROOT = Path(__file__).resolve().parents[1]
ALL_STEPS = (*DATA_STEPS, "build_model", "train_model", "evaluate_model", "register_model")


def default_config(*sets: str):
    """The product's default model: this module is the flow's end-to-end test with it."""
    return tiny_config(DEFAULT_MODEL, *sets)


@pytest.fixture(scope="module")
def baseline(prefect_server, module_workspace):
    return train_flow(config=default_config())



def test_first_run_trains_evaluates_and_registers(baseline):
    assert baseline["steps"] == {step: "Completed" for step in ALL_STEPS}
    assert baseline["version"] == "1" and set(baseline["aliases"]) == {"challenger", "champion"}
    assert set(baseline["metrics"]) == {"accuracy", "mean_iou", "iou50", "loss", "label_loss", "box_loss"}
    run_dir = Path(baseline["run_dir"])
    assert (run_dir / "model.keras").is_file() and (run_dir / "tensorboard").is_dir()
    report_files = {p.name: p for p in (run_dir.parent.parent / "evaluate_model").rglob("*") if p.is_file()}
    assert {"metrics.json", "curves.png", "predictions.png", "confusion.png"} <= set(report_files)
    written = json.loads(report_files["metrics.json"].read_text())
    counts = written["confusion_matrix"]["counts"]
    assert len(counts) == 10 and sum(map(sum, counts)) == 10  # every test image counted once
    assert written["accuracy"] == pytest.approx(sum(counts[i][i] for i in range(10)) / 10, abs=1e-6)
    for i, name in enumerate(written["confusion_matrix"]["classes"]):
        expected = counts[i][i] / sum(counts[i]) if sum(counts[i]) else None
        assert written["per_class_accuracy"][name] == (pytest.approx(expected) if expected is not None else None)
        assert written["slices"]["class"][name]["accuracy"] == written["per_class_accuracy"][name]
        assert written["slices"]["class"][name]["count"] == sum(counts[i])
    assert sum(row["count"] for row in written["slices"]["size"].values()) == 10
    assert "slices.png" in report_files

    version = registry.client().get_model_version("multitask-shapes", "1")
    assert {"data_fingerprint", "config_fingerprint", "code_fingerprint", "prefect_flow_run_id",
            "tensorflow_version", "keras_version"} <= set(version.tags)
    assert version.tags["code_fingerprint"] == fingerprint.library_fingerprint()


def test_metrics_artifacts_are_published(baseline):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        latest = {artifact.key: artifact for artifact in client.read_latest_artifacts()}
    assert {"test-metrics", "evaluation-summary", "training-progress", "mlflow-run", "model-card"} <= set(latest)
    summary = latest["evaluation-summary"].data
    # curves, predictions, confusion matrix, slices, reliability: pictures in place, not paths; small enough to load
    assert summary.count("](data:image/png;base64,") == 5 and len(summary) < 600_000
    assert "| class " in summary and "| size " in summary  # the slice table
    assert float(latest["training-progress"].data) == 100.0
    run_id = registry.resolve(f"{baseline['model']}/{baseline['version']}").run_id
    assert f"/runs/{run_id}" in latest["mlflow-run"].data


def test_the_model_card_of_a_registered_version_holds_every_section(baseline, tmp_path):
    from cli import app

    result = CliRunner().invoke(app, ["models", "card", "multitask-shapes/1"])
    assert result.exit_code == 0, result.output
    card = result.output
    sections = ["# Model card: multitask-shapes v1", "## Intended use", "## Data", "## Training",
                "## Results on the test split", "## Calibration", "## Gate decision", "## Lineage", "## Known limits"]
    assert [card.index(section) for section in sections] == sorted(card.index(section) for section in sections)
    version = registry.client().get_model_version("multitask-shapes", "1")
    for fact in (version.tags["data_fingerprint"], version.tags["code_fingerprint"], "circle, square, triangle",
                 "| class ", "| size small |", "label scores: ECE", "| **all** | **40** | **10** | **10** |",
                 f"{baseline['metrics']['accuracy']:.4f}", "Not judged by the gate"):
        assert fact in card, (fact, card)
    # below the default floors on 10 test images: the limits say so
    assert "too few to judge" in card
    logged = registry.client().download_artifacts(version.run_id, "model_card.md", str(tmp_path))
    assert Path(logged).read_text() == card  # the card logged at registration, unchanged since


def test_rerun_is_all_cached_registers_nothing_and_imports_neither_tensorflow_nor_mlflow(baseline, module_workspace):
    """In a fresh process, as from the shell: the cached steps only check their outputs."""
    from prefect.settings import PREFECT_API_URL

    before = versions()
    code = ("import json, sys; from multitask.config import RunConfig; from flows.train import train_flow; "
            f"result = train_flow(config=RunConfig.model_validate_json({default_config().model_dump_json()!r})); "
            "print(json.dumps({'steps': result['steps'], 'version': result['version'], "
            "'imported': sorted({'tensorflow', 'keras', 'mlflow'} & set(sys.modules))}))")
    env = {**os.environ, "MULTITASK_HOME": str(module_workspace), "PREFECT_API_URL": PREFECT_API_URL.value()}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    again = json.loads(done.stdout.strip().splitlines()[-1])
    assert again["steps"] == {step: "Cached" for step in ALL_STEPS}
    assert again["version"] == baseline["version"] and versions() == before
    assert again["imported"] == []  # TensorFlow Datasets is (`tasks` loads it), without TensorFlow


def test_calibrated_training_registers_the_calibrated_model(baseline):
    """`evaluate.calibrate`: the trained model (cached) gets a temperature; the version registered is
    the calibrated model, so whatever loads it (predict, serve, exports) gives calibrated scores."""
    calibrated = train_flow(config=default_config("evaluate.calibrate=true"))
    assert calibrated["steps"]["train_model"] == "Cached" and calibrated["steps"]["calibrate_model"] == "Completed"
    assert calibrated["version"] != baseline["version"]  # another model: a new version, not "unchanged"
    model, metadata = registry.load_registered(f"multitask-shapes/{calibrated['version']}")
    first, first_metadata = registry.load_registered(f"multitask-shapes/{baseline['version']}")
    assert "temperature" not in first_metadata and metadata["temperature"] > 0
    images = np.random.default_rng(0).random((4, *model.input_shape[1:]), dtype=np.float32)
    ours, theirs = model.predict_on_batch(images), first.predict_on_batch(images)
    head_input = keras.Model(first.inputs, first.get_layer("label").input).predict_on_batch(images)
    expected = softmax(label_logits(first, head_input.astype(np.float64)), metadata["temperature"])
    np.testing.assert_allclose(ours["label"], expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours["box"], theirs["box"], rtol=1e-6)


def test_training_change_reruns_training_onward(baseline):
    changed = train_flow(config=default_config('train.weighting="fixed"'))  # the default is dwa
    assert [changed["steps"][s] for s in (*DATA_STEPS, "build_model")] == ["Cached"] * 4
    assert [changed["steps"][s] for s in ("train_model", "evaluate_model", "register_model")] == ["Completed"] * 3
    assert changed["version"] != baseline["version"]
    assert changed["aliases"] == ["challenger"]  # champion stays with the first version
    # the learned weighting is registered with the model and comes back with it
    first = registry.load_model(f"multitask-shapes/{baseline['version']}")
    assert isinstance(first, WeightedMultiTask) and first.weighting == "dwa"
    assert not isinstance(registry.load_model(f"multitask-shapes/{changed['version']}"), WeightedMultiTask)


def test_dataset_seed_change_is_a_miss(baseline):
    changed = train_flow(config=default_config("data.seed=1"))
    # the initial model depends on class count and image size only, so it stays cached
    assert changed["steps"].pop("build_model") == "Cached"
    assert set(changed["steps"].values()) == {"Completed"}


def test_library_source_change_misses_every_step(baseline, tmp_path, monkeypatch):
    copy = tmp_path / "multitask"
    shutil.copytree(fingerprint.LIBRARY_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "losses.py").write_text((copy / "losses.py").read_text() + "\n# edited\n")
    # Its own records (rebuilding the baseline's would change their bytes for later tests), and the
    # starting point's small model: the cache keys are the same for every model, and it traces in
    # half the time. Every step cached under the real code first.
    config = tiny_config("data.seed=6")
    assert train_flow(config=config)["steps"]["train_model"] == "Completed"
    assert set(train_flow(config=config)["steps"].values()) == {"Cached"}
    monkeypatch.setattr(fingerprint, "LIBRARY_DIR", copy)
    changed = train_flow(config=config)
    assert changed["steps"] == {step: "Completed" for step in ALL_STEPS}


def test_deleted_outputs_are_recomputed_not_a_broken_hit(baseline):
    """The data flow's steps share the train flow's cache policy; a snapshot is enough to show it."""
    config = default_config("data.seed=4")  # its own records and snapshot: the baseline's stay as they are
    snapshots = Path(os.environ["MULTITASK_HOME"]) / "steps" / "build_snapshot"
    before = set(snapshots.iterdir())
    assert data_flow(config=config)["steps"] == dict.fromkeys(DATA_STEPS, "Completed")
    (mine,) = set(snapshots.iterdir()) - before
    shutil.rmtree(mine)
    again = data_flow(config=config)
    assert again["steps"] == dict(zip(DATA_STEPS, ["Cached", "Completed", "Completed"]))
    assert any(mine.iterdir())


def _fail_first_calls(monkeypatch, exc: Exception, times: int) -> list[int]:
    calls: list[int] = []
    real = catalog.prepare

    def flaky(data):
        calls.append(1)
        if len(calls) <= times:
            raise exc
        return real(data)

    monkeypatch.setattr(catalog, "prepare", flaky)
    return calls


def test_transient_error_is_retried_and_the_flow_completes(baseline, monkeypatch):
    no_retry_waits(monkeypatch, prepare_dataset)
    calls = _fail_first_calls(monkeypatch, OSError("disk hiccup"), times=1)
    result = data_flow(config=default_config("data.seed=2"))
    assert len(calls) == 2 and set(result["steps"].values()) == {"Completed"}


def test_bad_input_fails_once_without_retry(baseline, monkeypatch):
    calls = _fail_first_calls(monkeypatch, DataError("row 3: xmin >= xmax"), times=5)
    with pytest.raises(DataError, match="xmin >= xmax"):
        data_flow(config=default_config("data.seed=3"))
    assert len(calls) == 1


def test_cli_json_contract(baseline):
    from cli import app

    expected = train_flow(config=default_config())  # earlier tests may have moved the latest version
    args = ["train", "--json", *(arg for item in [*TINY, DEFAULT_MODEL] for arg in ("--set", item))]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(summary) == {"model", "version", "aliases", "metrics", "training", "steps", "run_dir"}
    assert summary["training"] == {"epochs": 1, "best_epoch": 1, "stopped": "max_epochs",
                                   "minutes": expected["training"]["minutes"]}
    assert summary["version"] == expected["version"]
    assert summary["steps"] == {step: "Cached" for step in ALL_STEPS}


def test_cli_models_list(baseline):
    from cli import app

    result = CliRunner().invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    first = next(row for row in rows if row["version"] == "1")
    assert "champion" in first["aliases"]
