"""Compiling a model to train (`multitask.compiling`): schedule, weight decay, tracing."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from multitask.compiling import compile_model
from multitask.config import ModelConfig, TrainConfig
from multitask.model import build_model, load


def test_cosine_schedule_decays_to_zero_over_all_training_steps():
    model = build_model(ModelConfig(), 10, 32)
    cfg = TrainConfig(lr_schedule="cosine", epochs=4, learning_rate=1e-3)
    model = compile_model(model, cfg, steps_per_epoch=5)
    rates = []
    for step in (0, 10, 20):
        model.optimizer.iterations.assign(step)
        rates.append(float(model.optimizer.learning_rate))
    assert rates == pytest.approx([1e-3, 0.5e-3, 0.0], abs=1e-9)
    constant = compile_model(build_model(ModelConfig(), 10, 32), TrainConfig(lr_schedule="constant"), steps_per_epoch=5)
    constant.optimizer.iterations.assign(20)
    assert float(constant.optimizer.learning_rate) == pytest.approx(1e-3)


def test_weight_decay_shrinks_every_weight_but_the_learned_task_weights():
    """With zero gradients Adam moves nothing, so one step shows the decay alone: w * (1 - lr * decay)."""
    cfg = TrainConfig(weighting="uncertainty", weight_decay=0.5, learning_rate=0.1, lr_schedule="constant")
    model = compile_model(build_model(ModelConfig(), 3, 32), cfg, steps_per_epoch=1)
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    model.optimizer.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_variables])
    for v in model.trainable_variables:
        expected = before[v.path] if v.name == "log_variances" else before[v.path] * (1 - 0.1 * 0.5)
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-6, err_msg=v.path)
    assert any(v.name == "log_variances" for v in model.trainable_variables)


def _count_traces(model: keras.Model) -> dict[str, int]:
    """How many times each of `model`'s train and test steps gets traced from now on."""
    traced = {"train": 0, "test": 0}

    def counted(kind, step):
        def step_once(data):
            traced[kind] += 1
            return step(data)
        return step_once

    model.train_step, model.test_step = counted("train", model.train_step), counted("test", model.test_step)
    return traced


@pytest.mark.slow
@pytest.mark.graph  # compiled, as the product runs
@pytest.mark.parametrize("weighting", ["fixed", "dwa"])
def test_each_step_is_traced_once_in_training_and_after_loading(weighting, tmp_path):
    """A variable created inside a step's first trace (Keras builds a metric named by a string,
    and its own loss trackers, there) makes TensorFlow trace the whole step again: seconds more
    for every training and every evaluation."""
    cfg = TrainConfig(weighting=weighting, steps_per_execution=2)
    model = compile_model(build_model(ModelConfig(preset="seed"), 3, 32), cfg, steps_per_epoch=2)
    images = np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32)
    targets = {"label": np.arange(8) % 3, "box": np.tile(np.float32([[0.2, 0.2, 0.6, 0.6]]), (8, 1))}
    data = tf.data.Dataset.from_tensor_slices((images, targets)).batch(4)
    traced = _count_traces(model)
    model.fit(data, validation_data=data, epochs=2, verbose=0)
    assert traced == {"train": 1, "test": 1}

    model.save(tmp_path / "model.keras")
    loaded = load(tmp_path / "model.keras")
    traced = _count_traces(loaded)
    loaded.evaluate(data, verbose=0)
    assert traced == {"train": 0, "test": 1}
