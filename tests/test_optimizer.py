"""FusedAdam: Keras' Adam update computed by one TensorFlow kernel per weight."""

import keras
import numpy as np
import pytest

from multitask.model import load
from multitask.optimizer import FusedAdam

pytestmark = pytest.mark.slow  # they train (a few steps of a tiny model)


def _model() -> keras.Model:
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])


@pytest.fixture(scope="module")
def start() -> list[np.ndarray]:
    """One set of starting weights for every model here, drawn from a seeded generator: Keras
    seeds each layer's initializer from Python's global `random`, which other threads of a test
    process draw from (two models built after `set_random_seed(0)` differed in CI)."""
    rng = np.random.default_rng(0)
    return [rng.uniform(-0.5, 0.5, w.shape).astype("float32") for w in _model().get_weights()]


def _trained(optimizer: keras.optimizers.Optimizer, start: list[np.ndarray], steps: int = 5) -> keras.Model:
    model = _model()
    model.set_weights(start)
    model.compile(optimizer=optimizer, loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 6)).astype("float32"), rng.normal(size=(32, 2)).astype("float32")
    for _ in range(steps):
        model.train_on_batch(x, y)
    return model


@pytest.mark.parametrize("settings", [{}, {"learning_rate": 0.05, "beta_1": 0.5, "epsilon": 1e-3, "weight_decay": 0.1}])
def test_the_same_weights_as_keras_adam_after_several_steps(settings, start):
    ours, theirs = _trained(FusedAdam(**settings), start), _trained(keras.optimizers.Adam(**settings), start)
    for mine, reference, initial in zip(ours.get_weights(), theirs.get_weights(), start):
        assert not np.allclose(mine, initial)  # the weights moved
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-6)


def test_a_model_compiled_with_it_saves_and_loads_in_safe_mode(tmp_path, start):
    model = _trained(FusedAdam(learning_rate=0.01), start)
    model.save(tmp_path / "m.keras")
    loaded = load(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, FusedAdam) and loaded.optimizer.learning_rate.numpy() == pytest.approx(0.01)
    assert int(loaded.optimizer.iterations.numpy()) == 5  # the moments came back with the weights
