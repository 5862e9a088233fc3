"""Training on tiny data: resume after a crash (BackupAndRestore, DWA state included) and NaN handling."""

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from multitask import callbacks
from multitask import train as train_module
from multitask.errors import UserError
from multitask.model import load
from multitask.pipeline import make_dataset
from multitask.train import read_history
from multitask.weighting import WeightedMultiTask

from helpers import TINY


class CrashAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise OSError("simulated crash")


def _dwa_label_weight(first_two: list[dict], cfg) -> float:
    """Dynamic Weight Average: 2 x softmax(loss ratio epoch 2 / epoch 1 per head, over T), times the fixed weight."""
    ratios = np.array([first_two[1][f"{h}_loss"] / first_two[0][f"{h}_loss"] for h in ("label", "box")])
    exps = np.exp(ratios / cfg.dwa_temperature)
    return float(2 * exps[0] / exps.sum() * cfg.label_loss_weight)


@pytest.fixture(scope="module")
def straight_run(inputs, tmp_path_factory):
    """The default model trained 3 epochs without a crash (DWA, weights' moving average): the
    trained model, its config, its progress reports and what it printed."""
    model_ref, snapshot, cfg = inputs
    train_cfg = cfg.train.model_copy(update={"epochs": 3, "weighting": "dwa", "ema_momentum": 0.9})
    percents: list[float] = []
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        trained = train_module.train(model_ref, snapshot, train_cfg, tmp_path_factory.mktemp("straight"),
                                     on_progress=percents.append)
    return trained, train_cfg, percents, printed.getvalue()


def test_rerun_after_a_crash_resumes_from_the_last_epoch_and_keeps_the_dwa_state(inputs, straight_run, tmp_path,
                                                                                 monkeypatch):
    model_ref, snapshot, _ = inputs
    trained, train_cfg, percents, printed = straight_run
    assert percents == [33.3, 66.7, 100.0]
    lines = [line for line in printed.splitlines() if line.startswith("Epoch ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]  # one compact line per epoch
    assert all(re.fullmatch(r"Epoch \d/3  [\d.]+s  loss [\d.]+  val_acc [\d.]+  val_iou [\d.]+  lr [\d.e+-]+", line)
               for line in lines), lines
    straight = read_history(trained.history_path)
    assert all({"label_weight", "box_weight"} <= set(row) for row in straight)
    assert abs(straight[2]["label_weight"] - 1.0) > 1e-3  # epoch 3 is weighted by the losses of epochs 1 and 2
    assert straight[2]["label_weight"] == pytest.approx(_dwa_label_weight(straight[:2], train_cfg), rel=1e-5)
    final = load(trained.model_path)
    assert isinstance(final, WeightedMultiTask) and final.weighting == "dwa"
    # trained with the where and edge losses on the box head's maps; saved with the two outputs it serves
    assert train_cfg.where_loss_weight > 0 and all(row["where_loss"] > 0 for row in straight)
    assert train_cfg.edge_loss_weight > 0 and all(row["edge_loss"] > 0 for row in straight)
    assert sorted(final.output_names) == ["box", "label"]

    run_dir = tmp_path / "resumed"
    real_callbacks = train_module._callbacks
    monkeypatch.setattr(train_module, "_callbacks", lambda *args: [CrashAtEpoch(2), *real_callbacks(*args)])
    with pytest.raises(OSError, match="simulated crash"):
        train_module.train(model_ref, snapshot, train_cfg, run_dir)
    first_epochs = json.loads((run_dir / "epochs.json").read_text())
    assert sorted(first_epochs) == ["1", "2"] and (run_dir / "backup").is_dir()
    assert not (run_dir / "model.keras").exists()  # no output that looks finished

    monkeypatch.setattr(train_module, "_callbacks", real_callbacks)
    resumed = train_module.train(model_ref, snapshot, train_cfg, run_dir)
    history = read_history(run_dir / "history.json")
    assert [row["epoch"] for row in history] == [1, 2, 3]
    # epochs 1 and 2 were not run again: their logged timings are the first attempt's
    assert [row["train_seconds"] for row in history[:2]] == [first_epochs["1"]["train_seconds"],
                                                              first_epochs["2"]["train_seconds"]]
    # The DWA state came back with the backup: epoch 3's weight follows from epochs 1 and 2.
    assert history[2]["label_weight"] == pytest.approx(_dwa_label_weight(history[:2], train_cfg), rel=1e-5)
    # Same batches, augmentations and dropout masks as the straight run: the same numbers, epoch by epoch.
    numbers = ("loss", "label_loss", "box_loss", "where_loss", "edge_loss", "val_loss", "label_weight")
    assert [[row[k] for k in numbers] for row in history] == [
        pytest.approx([row[k] for k in numbers], rel=1e-5) for row in straight]
    assert resumed.epochs == 3 and resumed.is_intact()
    assert not (run_dir / "backup").exists()  # cleaned once training finished


def test_a_crash_while_the_backup_is_written_resumes_from_the_epoch_before(inputs, straight_run, tmp_path,
                                                                          monkeypatch):
    """Killed while epoch 2's backup is being written: the retry resumes after epoch 1 (Keras alone
    leaves a half-written weights file there that no retry can open)."""
    model_ref, snapshot, _ = inputs
    trained, train_cfg, _, _ = straight_run
    real_save = keras.Model.save_weights
    saves = []

    def dies_in_second_save(self, filepath, *args, **kwargs):
        saves.append(filepath)
        real_save(self, filepath, *args, **kwargs)
        if len(saves) == 2:
            Path(filepath).write_bytes(Path(filepath).read_bytes()[:1000])
            raise OSError("simulated kill mid-write")

    monkeypatch.setattr(keras.Model, "save_weights", dies_in_second_save)
    run_dir = tmp_path / "run"
    with pytest.raises(OSError, match="simulated kill"):
        train_module.train(model_ref, snapshot, train_cfg, run_dir)
    first_epochs = json.loads((run_dir / "epochs.json").read_text())
    assert sorted(first_epochs) == ["1", "2"]
    assert sorted(p.name for p in (run_dir / "backup").iterdir()) == ["latest.weights.h5", "training_metadata.json"]

    monkeypatch.setattr(keras.Model, "save_weights", real_save)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        resumed = train_module.train(model_ref, snapshot, train_cfg, run_dir)
    assert [line.split()[1] for line in printed.getvalue().splitlines() if line.startswith("Epoch ")] == ["2/3", "3/3"]
    history = read_history(resumed.history_path)
    assert history[0]["train_seconds"] == first_epochs["1"]["train_seconds"]  # epoch 1 was not run again
    straight = read_history(trained.history_path)
    assert [row["loss"] for row in history] == pytest.approx([row["loss"] for row in straight], rel=1e-5)


def test_an_unreadable_backup_is_one_clear_error(inputs, tmp_path):
    model_ref, snapshot, cfg = inputs
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "latest.weights.h5").write_bytes(b"not a weights file")
    with pytest.raises(UserError, match=f"delete the run folder {tmp_path}"):
        train_module.train(model_ref, snapshot, cfg.train.model_copy(update={"epochs": 2}), tmp_path)


def test_diverging_loss_fails_the_run(inputs, tmp_path):
    model_ref, snapshot, cfg = inputs
    diverging = cfg.train.model_copy(update={"learning_rate": 1e12, "epochs": 2})
    with pytest.raises(RuntimeError, match="NaN|nan|Inf|inf"):
        train_module.train(model_ref, snapshot, diverging, tmp_path)
    assert not (tmp_path / "model.keras").exists()


MIRRORED = """
import json, sys
from pathlib import Path
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from multitask import train as train_module
from multitask.config_loader import load_config
from multitask.datasets import catalog
from multitask.model import save_initial
from multitask.pipeline import build_snapshot
from multitask.train import read_history, strategy

cfg, out = load_config("default", sets=json.loads(sys.argv[1])), Path(sys.argv[2])
snapshot = build_snapshot(catalog.prepare(cfg.data), cfg.data, out / "snapshot")
ref = save_initial(cfg.model, 10, cfg.data.image_size, out / "initial.keras")
result = {"replicas": strategy("mirrored").num_replicas_in_sync}
for kind in ("none", "mirrored"):
    trained = train_module.train(ref, snapshot, cfg.train.model_copy(update={"distribute": kind}), out / kind)
    result[kind] = read_history(trained.history_path)
print(json.dumps(result))
"""


@pytest.mark.slow
def test_mirrored_training_on_two_devices_matches_one(tmp_path):
    """Two logical CPU devices (set before TensorFlow starts, hence a process of its own): two
    replicas really run, each on half of every batch, and learn what one device learns. The
    default DWA weighting, so the head losses it tracks itself are checked under replicas too, and
    the weights' moving average (`train.ema_momentum`), whose swaps run in the strategy's context."""
    sets = [*TINY, "train.epochs=2", "train.learning_rate=3e-4", "train.augment_scale=0.0",
            "train.augment_shift=0.0", "train.augment_colour=0.0",  # TINY's seed model: no batch norm to split
            "train.ema_momentum=0.9"]
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED)
    done = subprocess.run([sys.executable, str(script), json.dumps(sets), str(tmp_path)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "MULTITASK_HOME": str(tmp_path / "ws")})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    # Close, not equal: Adam's first steps are about +-lr whatever a gradient's size, so the
    # all-reduce's rounding on near-zero gradients becomes whole steps (measured: 4% at most).
    for one, two in zip(result["none"], result["mirrored"], strict=True):
        for key in ("loss", "label_loss", "box_loss", "val_loss", "val_label_loss", "val_box_loss"):
            assert two[key] == pytest.approx(one[key], rel=0.1), key


def test_progress_follows_the_time_budget_when_it_ends_first(tmp_path):
    log = callbacks.EpochLog(tmp_path / "epochs.json")
    log.epochs = {"1": {"train_seconds": 30.0, "epoch_seconds": 30.0}}
    percents: list[float] = []
    progress = callbacks.Progress(log, epochs=100, max_minutes=2, report=percents.append)
    progress.on_epoch_end(0)
    log.epochs["2"] = {"train_seconds": 150.0, "epoch_seconds": 150.0}
    progress.on_epoch_end(1)
    assert percents == [25.0, 100.0]  # 30 s of 120, then past the budget (never above 100)
    assert callbacks.Progress(log, epochs=4, max_minutes=None, report=percents.append).on_epoch_end(0) is None
    assert percents[-1] == 25.0  # by epochs: 1 of 4


def test_with_ema_the_kept_model_is_the_validated_average(inputs, straight_run):
    """Validation scores the weights' moving average, and the checkpoint keeps what it scored (with
    Keras' `SwapEMAWeights()` alone, validation would see the average and the checkpoint the weights)."""
    _, snapshot, _ = inputs
    trained, train_cfg, _, _ = straight_run
    assert train_cfg.ema_momentum > 0
    best = read_history(trained.history_path)[trained.best_epoch - 1]
    kept = load(Path(trained.run_dir) / "best.keras").evaluate(make_dataset(snapshot, "validation", 16),
                                                                return_dict=True, verbose=0)
    assert kept["loss"] == pytest.approx(best["val_loss"], rel=1e-4)
