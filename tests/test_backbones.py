"""Pretrained backbone presets, offline: no weights, a weights file of the test's own, no network."""

import json
import socket

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from multitask import train as train_module
from multitask.backbones import BACKBONE_LAYER, backbone
from multitask.config import ModelConfig
from multitask.datasets import catalog
from multitask.errors import ConfigError
from multitask.fingerprint import hash_file
from multitask.model import build_model
from multitask.pipeline import build_snapshot
from multitask.records import ModelRef
from multitask.train import read_history

from conftest import TINY, tiny_config


def _backbone_of(model: keras.Model) -> keras.Model:
    return model.get_layer(BACKBONE_LAYER)


def test_a_weights_file_of_our_own_loads_into_the_backbone(tmp_path):
    saved = backbone("mobilenet_v3_small", 32, "none")
    saved.set_weights([w + 0.5 for w in saved.get_weights()])  # anything but a fresh initialisation
    saved.save_weights(tmp_path / "mine.weights.h5")
    config = ModelConfig(preset="mobilenet_v3_small", weights=str(tmp_path / "mine.weights.h5"))
    loaded = _backbone_of(build_model(config, 3, 32))
    for a, b in zip(saved.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    before = config.fingerprint
    saved.set_weights([w + 1.0 for w in saved.get_weights()])
    saved.save_weights(tmp_path / "mine.weights.h5")  # replaced in place: another cache key
    assert config.fingerprint != before


@pytest.mark.parametrize(("weights", "message"), [
    ("/nonexistent/b.weights.h5", "model.weights file /nonexistent/b.weights.h5 does not exist"),
])
def test_a_bad_weights_file_is_one_clear_error(weights, message):
    with pytest.raises(ConfigError, match=message):
        build_model(ModelConfig(preset="mobilenet_v3_small", weights=weights), 3, 32)


def test_imagenet_weights_offline_say_which_file_and_where(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(ConfigError, match=r"ImageNet weights for mobilenet_v3_small are not in "
                                          r".*/models/weights_mobilenet_v3_small_.*_no_top_v2\.h5 and could "
                                          r"not be downloaded: download https://\S+ to that path"):
        build_model(ModelConfig(preset="mobilenet_v3_small"), 3, 32)


@pytest.mark.slow
def test_the_backbone_is_frozen_first_then_fine_tuned(monkeypatch, tmp_path):
    """Two phases: heads alone (the backbone's weights do not move), then all layers."""
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append([w.numpy().copy() for w in _backbone_of(self.model).weights][:3])

    monkeypatch.setenv("MULTITASK_HOME", str(tmp_path / "ws"))
    cfg = tiny_config('model.preset="mobilenet_v3_small"', 'model.weights="none"', "data.image_size=32",
                      "train.epochs=2", "train.freeze_epochs=1")
    snapshot = build_snapshot(catalog.prepare(cfg.data), cfg.data, tmp_path / "snapshot")
    model = build_model(cfg.model, 10, 32)
    initial = [w.numpy().copy() for w in _backbone_of(model).weights][:3]
    model.save(tmp_path / "initial.keras")
    ref = ModelRef(path=str(tmp_path / "initial.keras"), preset=cfg.model.preset, params=model.count_params(),
                   fingerprint=hash_file(tmp_path / "initial.keras"))
    real = train_module._callbacks
    monkeypatch.setattr(train_module, "_callbacks", lambda *args: [Record(), *real(*args)])
    trained = train_module.train(ref, snapshot, cfg.train, tmp_path / "run")
    assert trained.epochs == 2 and [row["epoch"] for row in read_history(trained.history_path)] == [1, 2]
    frozen, tuned = seen
    assert all(np.array_equal(a, b) for a, b in zip(initial, frozen))  # phase 1: the backbone did not move
    assert not all(np.array_equal(a, b) for a, b in zip(frozen, tuned))  # phase 2: it did


def test_cli_trains_and_registers_a_pretrained_preset(prefect_server, workspace):
    sets = (*TINY, "data.image_size=32", 'model.preset="mobilenet_v3_small"', 'model.weights="none"')
    result = CliRunner().invoke(app, ["train", "--json", *(a for s in sets for a in ("--set", s))])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["model"] == "multitask-shapes" and summary["version"] == "1"
    assert summary["training"]["epochs"] == 1 and summary["training"]["stopped"] == "max_epochs"
