import random
import threading
from pathlib import Path

import keras
import numpy as np
import pytest

from multitask.compiling import compile_model
from multitask.config import ModelConfig, TrainConfig
from multitask.errors import ConfigError, UserError
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


@pytest.mark.parametrize(("stem", "resolution", "full_size_convs", "map_side"),
                         [("pool", "half", 1, 32), ("strided", "half", 0, 32), ("strided", "quarter", 0, 16)])
def test_the_stem_and_the_box_resolution_set_where_the_compute_goes(stem, resolution, full_size_convs, map_side):
    model = build_model(ModelConfig(stem=stem, box_resolution=resolution), 5, 64)
    full_size = [layer for layer in model.layers
                 if isinstance(layer, keras.layers.Conv2D) and layer.output.shape[1] == 64]
    assert len(full_size) == full_size_convs
    assert model.get_layer("box").input.shape[1:3] == (map_side, map_side)
    assert model.get_layer("label").output.shape[1:] == (5,)


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


def test_lambda_layers_are_refused_on_load(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ValueError, match="lambda|Lambda|unsafe"):
        load(path)


def test_the_default_model_refuses_a_size_it_cannot_halve_three_times():
    with pytest.raises(ConfigError, match=r"multiple of 8, got 100 \(try 96\)"):
        build_model(ModelConfig(), 10, 100)


def test_a_model_holding_a_removed_layer_is_refused_in_one_line():
    """`where_pool.keras` was saved with the `WherePool` layer of the removed `label_pooling = "where"`."""
    saved = Path(__file__).parent / "data" / "where_pool.keras"
    with pytest.raises(UserError, match=r"holds the layer WherePool \(label pooling \"where\", removed on "
                                        r"2026-12-06 .*\); this version cannot load it: retrain the model$"):
        load(saved, compile=False)


def test_a_model_whose_config_unpacks_too_large_is_refused_before_reading_it(monkeypatch):
    import multitask.model

    monkeypatch.setattr(multitask.model, "MAX_CONFIG_BYTES", 100)
    with pytest.raises(UserError, match=r"config.json unpacks to more than 100 bytes"):
        load(Path(__file__).parent / "data" / "where_pool.keras", compile=False)
