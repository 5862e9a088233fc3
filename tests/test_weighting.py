"""Task weighting: uncertainty log-variances learn and persist; DWA weights sum to the task count."""


import keras
import numpy as np
import pytest

from multitask.compiling import compile_model
from multitask.config import ModelConfig, TrainConfig
from multitask.model import build_model, load
from multitask.weighting import TaskWeightLog, WeightedMultiTask


def _data(n=16, size=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, size, size, 3), dtype=np.float32)
    y = {"label": rng.integers(0, 10, n), "box": np.tile([[0.2, 0.1, 0.6, 0.5]], (n, 1)).astype("float32")}
    return x, y


def _weighted(weighting: str) -> WeightedMultiTask:
    model = build_model(ModelConfig(), 10, 32)
    cfg = TrainConfig(weighting=weighting, label_loss_weight=1.0, box_loss_weight=50.0, steps_per_execution=1)
    return compile_model(model, cfg, steps_per_epoch=2)


@pytest.mark.slow
def test_uncertainty_weights_start_at_the_fixed_ones_learn_and_survive_save_load(tmp_path):
    model = _weighted("uncertainty")
    assert isinstance(model, WeightedMultiTask)
    assert any(v is model.log_variances for v in model.trainable_variables)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.task_weights()), [1.0, 50.0], rtol=1e-5)

    history = model.fit(*_data(), epochs=2, batch_size=8, verbose=0, callbacks=[TaskWeightLog()]).history
    assert history["label_weight"][0] != pytest.approx(1.0, abs=1e-6)  # learned during the first epoch
    learned = model.log_variances.numpy()
    assert not np.allclose(learned, [-np.log(2.0), -np.log(100.0)])

    path = tmp_path / "m.keras"
    model.save(path)
    loaded = load(path)
    assert isinstance(loaded, WeightedMultiTask) and loaded.weighting == "uncertainty"
    np.testing.assert_array_equal(loaded.log_variances.numpy(), learned)
    x, y = _data(seed=1)
    assert loaded.evaluate(x, y, verbose=0, return_dict=True)["loss"] == pytest.approx(
        model.evaluate(x, y, verbose=0, return_dict=True)["loss"], rel=1e-5)


def test_dwa_weights_sum_to_the_number_of_tasks_and_favour_the_slower_head():
    model = _weighted("dwa")
    model.end_epoch({"label": 2.0, "box": 0.010})
    np.testing.assert_array_equal(model.dwa_lambdas.numpy(), [1.0, 1.0])  # 1 until two epochs are known
    model.end_epoch({"label": 1.0, "box": 0.009})  # label halved, box barely moved
    lambdas = model.dwa_lambdas.numpy()
    assert lambdas.sum() == pytest.approx(2.0) and lambdas[1] > lambdas[0]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.task_weights()), lambdas * [1.0, 50.0], rtol=1e-6)


@pytest.mark.slow
def test_dwa_lambdas_sum_to_two_after_every_epoch_of_training():
    model = _weighted("dwa")
    history = model.fit(*_data(), epochs=4, batch_size=8, verbose=0, callbacks=[TaskWeightLog()]).history
    sums = [label + box / 50.0 for label, box in zip(history["label_weight"], history["box_weight"])]
    assert sums == pytest.approx([2.0] * 4)
    assert history["label_weight"][:2] == [1.0, 1.0] and history["label_weight"][3] != 1.0
