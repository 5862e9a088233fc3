"""Pretrained backbone presets, offline: no weights, a weights file of the test's own, no network."""

import json
import socket
from pathlib import Path

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from multitask import train as train_module
from multitask.backbones import BACKBONE_LAYER, backbone
from multitask.config import ModelConfig
from multitask.errors import ConfigError
from multitask.model import build_model
from multitask.step_keys import model_fingerprint
from multitask.train import read_history

from helpers import TINY


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

    before = model_fingerprint(config)
    saved.set_weights([w + 1.0 for w in saved.get_weights()])
    saved.save_weights(tmp_path / "mine.weights.h5")  # replaced in place: another cache key
    assert model_fingerprint(config) != before


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


@pytest.mark.graph  # a compiled train step is what could keep the backbone frozen after phase 1
def test_cli_trains_a_pretrained_preset_frozen_first_then_fine_tuned(prefect_server, workspace, monkeypatch):
    """Two phases through the CLI: heads alone (the backbone's weights do not move), then all layers."""
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            if not seen:
                seen.append(_first_weights(self.model))

        def on_epoch_end(self, epoch, logs=None):
            seen.append(_first_weights(self.model))

    real = train_module._callbacks
    monkeypatch.setattr(train_module, "_callbacks", lambda *args: [Record(), *real(*args)])
    sets = (*TINY, "data.image_size=32", 'model.preset="mobilenet_v3_small"', 'model.weights="none"',
            "train.epochs=2", "train.freeze_epochs=1",
            "train.steps_per_execution=1")  # one step per call: traced in less time than a loop of 16
    result = CliRunner().invoke(app, ["train", "--json", *(a for s in sets for a in ("--set", s))])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["model"] == "multitask-shapes" and summary["version"] == "1"
    assert summary["training"]["epochs"] == 2 and summary["training"]["stopped"] == "max_epochs"
    history = read_history(Path(summary["run_dir"]) / "history.json")
    assert [row["epoch"] for row in history] == [1, 2]
    initial, frozen, tuned = seen
    assert all(np.array_equal(a, b) for a, b in zip(initial, frozen))  # phase 1: the backbone did not move
    assert not all(np.array_equal(a, b) for a, b in zip(frozen, tuned))  # phase 2: it did


def _first_weights(model: keras.Model) -> list[np.ndarray]:
    return [w.numpy().copy() for w in _backbone_of(model).weights][:3]
