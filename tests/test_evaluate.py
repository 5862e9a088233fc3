"""Evaluation's metrics come from its one prediction pass, and equal what Keras' `evaluate` reports."""

import numpy as np
import pytest
import tensorflow as tf

from multitask.compiling import compile_model
from multitask.config import ModelConfig, TrainConfig
from multitask.evaluate import METRIC_NAMES, metrics_from_predictions
from multitask.model import build_model
from multitask.weighting import WeightedMultiTask

HEAD_LOSSES = ("label_loss", "box_loss")


@pytest.mark.parametrize("weighting", ["fixed", "dwa"])  # Keras' own losses, and `WeightedMultiTask`'s
def test_metrics_from_predictions_equal_keras_evaluate_over_uneven_batches(weighting):
    cfg = TrainConfig(weighting=weighting)
    model = compile_model(build_model(ModelConfig(preset="seed"), 4, 32), cfg, 1)
    assert isinstance(model, WeightedMultiTask) == (weighting == "dwa")
    rng = np.random.default_rng(0)
    corners = np.sort(rng.random((37, 2, 2), dtype=np.float32), axis=1)  # two corners, the first above left
    truth = {"label": rng.integers(0, 4, 37), "box": corners.reshape(37, 4)}
    images = rng.random((37, 32, 32, 3), dtype=np.float32)
    data = tf.data.Dataset.from_tensor_slices((images, truth))

    ours = metrics_from_predictions(model, truth, model.predict(data.batch(8), verbose=0))
    batched = model.evaluate(data.batch(8), return_dict=True, verbose=0)  # 4 batches of 8, one of 5
    assert {name: ours[name] for name in ours if name not in HEAD_LOSSES} == {
        name: pytest.approx(batched[keras_name], rel=1e-5, abs=1e-6)
        for keras_name, name in METRIC_NAMES.items() if name not in HEAD_LOSSES}
    # Keras averages its per-head losses over batches, the short one counting as much: per image, they
    # are what one batch of all 37 gives.
    whole = model.evaluate(data.batch(37), return_dict=True, verbose=0)
    assert {name: ours[name] for name in HEAD_LOSSES} == {name: pytest.approx(whole[name], rel=1e-5)
                                                          for name in HEAD_LOSSES}
    assert 0 < ours["accuracy"] < 1  # images right and wrong: not a case any averaging gets equal
