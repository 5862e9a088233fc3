"""Does a score of 0.9 come true 9 times in 10? The label head's calibration, and temperature scaling.

Expected calibration error (ECE): the test images binned by their top score (`BINS` equal
bins), the gap between each bin's mean score and its accuracy, weighted by the bin's share of
the images. Temperature scaling (Guo et al., 2017) divides the label head's logits by one number
T fitted to the validation split's negative log-likelihood: the predicted class never changes,
only how sure the scores say the model is. Every preset's label head is one Dense layer with a
softmax, so that layer's kernel and bias divided by T *are* the calibrated model: `predict`, the
served model and the exports apply it with no code of their own. The fit and the ECE before
calibration work on the logits themselves (the label head's input times its kernel, plus its
bias), not on logarithms of the scores: a float32 score of a sure model is exactly 0 or 1, and its
logarithm has lost the logit.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from multitask import atomic
from multitask.records import SnapshotRef, TrainedModelRef, hash_files

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

BINS = 15
LABEL_LAYER = "label"  # the Dense layer with the softmax, in every preset
# The range the fit searches: wide enough for the over- and under-confidence seen in practice,
# narrow enough that a small validation split cannot push the scores to 0 or 1.
TEMPERATURES = (0.25, 10.0)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> list[dict]:
    """Per bin of top score: its edges, image count, mean top score and accuracy (None when empty)."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        rows.append({"low": b / bins, "high": (b + 1) / bins, "count": count,
                     "confidence": round(float(confidence[members].mean()), 6) if count else None,
                     "accuracy": round(float(correct[members].mean()), 6) if count else None})
    return rows


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    rows = [row for row in reliability_bins(probs, labels, bins) if row["count"]]
    total = sum(row["count"] for row in rows)
    return round(sum(row["count"] / total * abs(row["confidence"] - row["accuracy"]) for row in rows), 6)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Scores from logits divided by `temperature` (float64, stable)."""
    scaled = logits.astype(np.float64) / temperature
    exp = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def label_head_input(model: keras.Model, ds: tf.data.Dataset, batch_size: int = 128) -> np.ndarray:
    """What the label head's Dense layer takes in, for every image of a snapshot split."""
    import keras

    from multitask.pipeline import normalise

    head_input = keras.Model(model.inputs, model.get_layer(LABEL_LAYER).input)
    batches = ds.map(lambda ex: normalise(ex["image"])).batch(batch_size)
    return np.concatenate([head_input.predict_on_batch(batch) for batch in batches]).astype(np.float64)


def label_logits(model: keras.Model, head_input: np.ndarray) -> np.ndarray:
    """The label head's logits from its input (its kernel, and its bias when it has one)."""
    kernel, *bias = model.get_layer(LABEL_LAYER).get_weights()
    return head_input @ kernel + (bias[0] if bias else 0.0)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in `TEMPERATURES` that minimises the negative log-likelihood of `labels`. When the
    model names every validation image right, the likelihood only grows as T shrinks, and the fit
    ends at the lower end of the range: scores as sure as the range allows."""
    from scipy.optimize import minimize_scalar  # here: the command line reads this module at start
    from scipy.special import log_softmax

    def nll(log_t: float) -> float:
        return -float(np.mean(log_softmax(logits / np.exp(log_t), axis=1)[np.arange(len(labels)), labels]))

    found = minimize_scalar(nll, bounds=tuple(np.log(TEMPERATURES)), method="bounded", options={"xatol": 1e-4})
    return round(float(np.exp(found.x)), 4)


def with_temperature(model: keras.Model, temperature: float) -> keras.Model:
    """`model` with its label head's logits divided by `temperature` (in place; returns it)."""
    layer = model.get_layer(LABEL_LAYER)
    layer.set_weights([weight / temperature for weight in layer.get_weights()])
    return model


def calibrate(trained: TrainedModelRef, snapshot: SnapshotRef, batch_size: int, out_dir: Path) -> TrainedModelRef:
    """The trained model with the temperature fitted on the validation split, saved in `out_dir`."""
    from multitask.model import load  # TensorFlow: summaries read this module without it
    from multitask.pipeline import load_split

    model = load(trained.model_path)
    validation = load_split(snapshot, "validation")
    logits = label_logits(model, label_head_input(model, validation, batch_size))
    labels = np.concatenate([batch.numpy() for batch in validation.map(lambda ex: ex["label"]).batch(1024)])
    temperature = fit_temperature(logits, labels)
    path = atomic.write_with(out_dir / "model.keras", with_temperature(model, temperature).save)
    return trained.model_copy(update={"model_path": str(path), "temperature": temperature,
                                      "fingerprint": hash_files([path, Path(trained.history_path)])})


def calibration_line(found: dict[str, float]) -> str:
    """`label scores: ECE 0.012 (0.054 before temperature 1.71)`, for summaries."""
    line = f"label scores: ECE {found['ece']:.3f}"
    if "temperature" in found:
        line += f" ({found['ece_uncalibrated']:.3f} before temperature {found['temperature']:.2f})"
    return line
