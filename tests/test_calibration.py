"""Calibration: ECE and its bins on known answers; a temperature fitted on an over-confident model."""

import keras
import numpy as np
import pytest

from multitask.calibration import (
    expected_calibration_error,
    fit_temperature,
    label_logits,
    reliability_bins,
    softmax,
    with_temperature,
)


def test_ece_is_the_weighted_gap_between_score_and_accuracy():
    # 4 images scored 0.9 (3 right), 2 scored 0.6 (both right): |0.9 - 0.75| * 4/6 + |0.6 - 1| * 2/6
    probs = np.array([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2)
    labels = np.array([0, 0, 0, 1, 0, 0])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.15 * 4 / 6 + 0.4 * 2 / 6, abs=1e-6)
    bins = [row for row in reliability_bins(probs, labels) if row["count"]]
    assert [(row["count"], row["confidence"], row["accuracy"]) for row in bins] == [(2, 0.6, 1.0), (4, 0.9, 0.75)]
    assert expected_calibration_error(np.array([[1.0, 0.0]] * 3), np.array([0, 0, 0])) == 0.0


def _over_confident(rng, n=4000, classes=5):
    """Logits four times too large: scores far surer than the model is right."""
    labels = rng.integers(0, classes, n)
    logits = rng.normal(0, 1, (n, classes))
    logits[np.arange(n), labels] += 1.8
    return 4 * logits, labels


def test_a_fitted_temperature_lowers_the_ece_of_an_over_confident_model():
    rng = np.random.default_rng(0)
    fit_logits, fit_labels = _over_confident(rng)
    test_logits, test_labels = _over_confident(rng)
    temperature = fit_temperature(fit_logits, fit_labels)
    assert temperature > 1.2  # an over-confident model is cooled down
    before = expected_calibration_error(softmax(test_logits), test_labels)
    after = expected_calibration_error(softmax(test_logits, temperature), test_labels)
    assert before > 0.1 and after < before / 4, (before, after)
    assert (softmax(test_logits, temperature).argmax(1) == test_logits.argmax(1)).all()  # the same classes


def test_the_fit_reads_logits_a_float32_score_has_lost():
    """Sure enough that float32 scores are exactly 0 and 1: the logits still say how sure."""
    rng = np.random.default_rng(2)
    logits, labels = _over_confident(rng)
    assert (softmax(logits * 4).astype(np.float32).max(axis=1) == 1.0).mean() > 0.4
    assert fit_temperature(logits * 4, labels) == pytest.approx(4 * fit_temperature(logits, labels), rel=1e-3)


def test_the_label_layer_divided_by_the_temperature_is_the_rescaled_model():
    inputs = keras.Input((6,))
    model = keras.Model(inputs, {"label": keras.layers.Dense(4, activation="softmax", name="label")(inputs),
                                 "box": keras.layers.Dense(4, activation="sigmoid", name="box")(inputs)})
    x = np.random.default_rng(1).normal(0, 3, (8, 6)).astype("float32")
    before, logits = model.predict_on_batch(x), label_logits(model, x.astype(np.float64))
    np.testing.assert_allclose(before["label"], softmax(logits), rtol=1e-4, atol=1e-6)
    after = with_temperature(model, 2.5).predict_on_batch(x)
    np.testing.assert_allclose(after["label"], softmax(logits, 2.5), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(after["box"], before["box"])


def test_calibrating_a_deliberately_over_confident_model_lowers_its_test_ece(seed_inputs, tmp_path):
    """A real model made over-confident (its label logits times 20), calibrated on a real snapshot's
    validation split by `calibrate`, then judged on its test split."""
    from multitask.calibration import calibrate
    from multitask.compiling import compile_model
    from multitask.evaluate import evaluate
    from multitask.model import load
    from multitask.records import TrainedModelRef, hash_files

    model_ref, snapshot, cfg = seed_inputs
    sure = compile_model(with_temperature(load(model_ref.path), 0.05), cfg.train, steps_per_epoch=1)
    sure.save(tmp_path / "sure.keras")
    (tmp_path / "history.json").write_text("{}")
    files = [tmp_path / "sure.keras", tmp_path / "history.json"]
    trained = TrainedModelRef(run_dir=str(tmp_path), model_path=str(files[0]), history_path=str(files[1]), epochs=1,
                              best_epoch=1, train_seconds=1.0, images_per_second=1.0, fingerprint=hash_files(files))
    calibrated = calibrate(trained, snapshot, 16, tmp_path / "calibrated")
    assert calibrated.temperature > 5 and calibrated.is_intact()
    before = evaluate(trained.model_path, snapshot, cfg.evaluate, tmp_path / "before")
    after = evaluate(calibrated.model_path, snapshot, cfg.evaluate, tmp_path / "after",
                     temperature=calibrated.temperature)
    assert after.calibration["ece"] < before.calibration["ece"] / 2, (before.calibration, after.calibration)
    assert after.calibration["ece_uncalibrated"] == pytest.approx(before.calibration["ece"], abs=1e-3)
    assert after.metrics["accuracy"] == before.metrics["accuracy"]  # the same classes
    assert after.reliability_path and "temperature" not in before.calibration
