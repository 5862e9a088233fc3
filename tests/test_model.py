import random
import threading
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from multitask.compiling import compile_model
from multitask.config import ModelConfig, TrainConfig
from multitask.errors import ConfigError, UserError
from multitask.losses import BoxLoss
from multitask.metrics import box_iou_numpy
from multitask.model import build_model, input_size, load


def test_seed_preset_is_the_starting_point():
    model = build_model(ModelConfig(preset="seed"), num_classes=10, image_size=64)
    assert model.count_params() == 6_313_550
    assert set(model.output_names) == {"label", "box"}
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Conv2D") == 2 and kinds.count("Dense") == 4 and kinds.count("MaxPooling2D") == 2


@pytest.mark.parametrize("preset", ["seed", "default"])
def test_outputs_are_probabilities_and_unit_boxes(preset):
    model = build_model(ModelConfig(preset=preset), num_classes=5, image_size=32)
    out = keras.tree.map_structure(np.asarray, model(np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32)))
    assert out["label"].shape == (3, 5) and out["box"].shape == (3, 4)
    np.testing.assert_allclose(out["label"].sum(axis=1), 1.0, rtol=1e-5)
    assert (out["box"] >= 0).all() and (out["box"] <= 1).all()


def test_same_model_seed_gives_same_weights():
    a = build_model(ModelConfig(seed=3), 10, 32).get_weights()
    b = build_model(ModelConfig(seed=3), 10, 32).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_other_threads_drawing_from_python_random_do_not_change_the_weights():
    """Keras seeds each layer's initializer from Python's global `random` as the layer is
    created; a thread of Prefect's or Dask's drawing from it meanwhile must not matter."""
    alone = build_model(ModelConfig(preset="seed", seed=3), 10, 32).get_weights()
    stop = threading.Event()

    def draw():
        while not stop.is_set():
            random.random()

    drawing = threading.Thread(target=draw)
    drawing.start()
    try:
        busy = build_model(ModelConfig(preset="seed", seed=3), 10, 32).get_weights()
    finally:
        stop.set()
        drawing.join()
    assert all(np.array_equal(x, y) for x, y in zip(alone, busy, strict=True))


def test_default_model_round_trips_in_safe_mode(tmp_path):
    model = build_model(ModelConfig(), 10, 32)
    # Keras compiles a fixed weighting with no where or edge loss itself
    fixed = TrainConfig(box_loss="huber+ciou", weighting="fixed", where_loss_weight=0.0, edge_loss_weight=0.0)
    model = compile_model(model, fixed, steps_per_epoch=1)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = load(path)
    x = np.random.default_rng(1).random((2, 32, 32, 3), dtype=np.float32)
    # called directly, not through `predict`, which would trace each model first
    np.testing.assert_allclose(loaded(x, training=False)["box"], model(x, training=False)["box"], atol=1e-6)
    assert loaded.loss["box"].kind == "huber+ciou"
    weighted = compile_model(build_model(ModelConfig(), 10, 32), TrainConfig(box_loss="huber+ciou"), steps_per_epoch=1)
    weighted.save(path)
    assert load(path).head_losses["box"].kind == "huber+ciou"  # a learned weighting owns its losses


@pytest.mark.parametrize(("preset", "side"), [("seed", 48), ("default", 64), ("mobilenet_v3_small", 96)])
def test_the_input_size_is_read_from_the_file_without_loading_the_model(tmp_path, preset, side):
    path = tmp_path / "m.keras"
    build_model(ModelConfig(preset=preset, weights="none"), 3, side).save(path)
    assert input_size(path) == side


BOX = np.array([[0.2, 0.2, 0.6, 0.6]], dtype=np.float32)


@pytest.mark.parametrize("kind", ["huber", "iou", "giou", "ciou", "huber+giou", "huber+ciou"])
def test_box_loss_is_zero_on_identical_boxes_and_grows_apart(kind):
    loss = BoxLoss(kind=kind)
    values = [float(loss(BOX, BOX + shift)) for shift in (0.0, 0.05, 0.2, 0.4)]
    assert values[0] == pytest.approx(0.0, abs=1e-5)  # Keras CIoU keeps an epsilon of ~2e-6
    assert values == sorted(values) and values[1] > 0


@pytest.mark.parametrize(("kind", "has_gradient"), [("giou", True), ("ciou", True), ("iou", False)])
def test_giou_and_ciou_have_a_gradient_for_disjoint_boxes(kind, has_gradient):
    far = tf.Variable([[0.7, 0.7, 0.9, 0.9]])
    with tf.GradientTape() as tape:
        value = BoxLoss(kind=kind)(tf.constant(BOX), far)
    gradient = tape.gradient(value, far)
    assert (gradient is not None and float(tf.reduce_sum(tf.abs(gradient))) > 0) == has_gradient


@pytest.mark.parametrize("kind", ["l2", "huber+huber", "bce+huber"])
def test_unknown_box_losses_are_refused(kind):
    with pytest.raises(ValueError, match="box loss"):
        BoxLoss(kind=kind)


def test_box_iou_known_values():
    a = np.array([[0, 0, 1, 1], [0, 0, 0.5, 0.5], [0, 0, 0.2, 0.2]], dtype=np.float32)
    b = np.array([[0, 0, 1, 1], [0, 0.25, 0.5, 0.75], [0.5, 0.5, 1, 1]], dtype=np.float32)
    np.testing.assert_allclose(box_iou_numpy(a, b), [1.0, 1 / 3, 0.0], atol=1e-6)


def test_lambda_layers_are_refused_on_load(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ValueError, match="lambda|Lambda|unsafe"):
        load(path)


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


def test_the_default_model_refuses_a_size_it_cannot_halve_three_times():
    with pytest.raises(ConfigError, match=r"multiple of 8, got 100 \(try 96\)"):
        build_model(ModelConfig(), 10, 100)


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


def test_a_model_holding_a_removed_layer_is_refused_in_one_line():
    """`where_pool.keras` was saved with the `WherePool` layer of the removed `label_pooling = "where"`."""
    saved = Path(__file__).parent / "data" / "where_pool.keras"
    with pytest.raises(UserError, match=r"holds the layer WherePool \(label pooling \"where\", removed on "
                                        r"2026-12-06 .*\); this version cannot load it: retrain the model$"):
        load(saved, compile=False)
