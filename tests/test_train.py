"""Training on tiny data: resume after a crash (BackupAndRestore) and NaN handling."""

import json

import keras
import pytest

from multitask import train as train_module
from multitask.datasets import catalog
from multitask.fingerprint import hash_file
from multitask.model import build_model
from multitask.pipeline import build_snapshot
from multitask.records import ModelRef
from multitask.train import read_history

from conftest import tiny_config


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    home = tmp_path_factory.mktemp("ws")
    cfg = tiny_config()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MULTITASK_HOME", str(home))
        snapshot = build_snapshot(catalog.prepare(cfg.data), cfg.data, home / "snapshot")
        model = build_model(cfg.model, 10, cfg.data.image_size)
        path = home / "initial.keras"
        model.save(path)
        ref = ModelRef(path=str(path), preset="default", params=model.count_params(), fingerprint=hash_file(path))
        yield ref, snapshot, cfg


class CrashAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise OSError("simulated crash")


def test_rerun_after_a_crash_resumes_from_the_last_epoch(inputs, tmp_path, monkeypatch):
    model_ref, snapshot, cfg = inputs
    train_cfg = cfg.train.model_copy(update={"epochs": 3})
    real_callbacks = train_module._callbacks
    monkeypatch.setattr(train_module, "_callbacks",
                        lambda *args: [CrashAtEpoch(2), *real_callbacks(*args)])
    with pytest.raises(OSError, match="simulated crash"):
        train_module.train(model_ref, snapshot, train_cfg, tmp_path)
    first_epochs = json.loads((tmp_path / "epochs.json").read_text())
    assert sorted(first_epochs) == ["1", "2"] and (tmp_path / "backup").is_dir()
    assert not (tmp_path / "model.keras").exists()  # no output that looks finished

    monkeypatch.setattr(train_module, "_callbacks", real_callbacks)
    trained = train_module.train(model_ref, snapshot, train_cfg, tmp_path)
    history = read_history(tmp_path / "history.json")
    assert [row["epoch"] for row in history] == [1, 2, 3]
    # epochs 1 and 2 were not run again: their logged timings are the first attempt's
    assert [row["train_seconds"] for row in history[:2]] == [first_epochs["1"]["train_seconds"],
                                                              first_epochs["2"]["train_seconds"]]
    assert trained.epochs == 3 and trained.is_intact()
    assert not (tmp_path / "backup").exists()  # cleaned once training finished


def test_diverging_loss_fails_the_run(inputs, tmp_path):
    model_ref, snapshot, cfg = inputs
    diverging = cfg.train.model_copy(update={"learning_rate": 1e12, "epochs": 2})
    with pytest.raises(RuntimeError, match="NaN|nan|Inf|inf"):
        train_module.train(model_ref, snapshot, diverging, tmp_path)
    assert not (tmp_path / "model.keras").exists()
