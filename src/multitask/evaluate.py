"""evaluate(): test-split metrics, per-class accuracy, the confusion matrix, the metrics per slice
(`slices`), and the figures that show them."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from multitask import atomic
from multitask.calibration import (
    expected_calibration_error,
    label_head_input,
    label_logits,
    reliability_bins,
    softmax,
)
from multitask.config import EvaluateConfig
from multitask.drift import reference_view
from multitask.fingerprint import hash_file
from multitask.metrics import box_iou_numpy
from multitask.model import load
from multitask.pipeline import load_split, make_dataset, pixel_boxes
from multitask.plots import plot_confusion, plot_curves, plot_predictions, plot_reliability, plot_slices
from multitask.records import HEAD_METRICS, MODEL_VIEW, EvalReport, SnapshotRef
from multitask.slices import box_areas, size_of, slice_metrics
from multitask.train import read_history

# Keras log name -> our metric name (the JSON contract of `multitask train --json`).
METRIC_NAMES = {
    "loss": "loss", "label_loss": "label_loss", "box_loss": "box_loss",
    "label_accuracy": "accuracy", "label_top5": "top5_accuracy",
    "box_mean_iou": "mean_iou", "box_iou50": "iou50",
}


def evaluate(model_path: str, snapshot: SnapshotRef, cfg: EvaluateConfig, out_dir: Path,
             history_path: str | None = None, temperature: float | None = None,
             model_view: bool = False) -> EvalReport:
    """Evaluate a `.keras` model on the test split and write the report files to `out_dir`.

    The training-curves PNG needs the training history; a registered model fetched from
    the registry (a champion) has none, so it gets the metrics and the predictions grid.
    `temperature`: the one the model was calibrated with, to report its ECE before and after.
    `model_view`: also write the model's view of the test split (`records.MODEL_VIEW`), which
    registering a model logs with it for later drift checks.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load(model_path)
    test = make_dataset(snapshot, "test", cfg.batch_size)
    # One prediction pass over the test split, in its order, for the metrics, the confusion matrix
    # and the grid: each further way of predicting (evaluate, per batch, on an array) would run
    # the model over the split again and trace it again.
    predicted = model.predict(test, verbose=0)
    truth = {head: np.concatenate([targets[head].numpy() for _, targets in test]) for head in HEAD_METRICS}
    metrics = metrics_from_predictions(model, truth, predicted)
    counts = confusion_matrix(truth["label"], np.argmax(predicted["label"], axis=-1), len(snapshot.class_names))
    per_class = per_class_accuracy(counts, snapshot.class_names)
    slices = test_slices(truth, predicted, snapshot, cfg)
    # The label head's input: one more pass over the test split, only when something needs it
    # (the logits before calibration, the model's view for drift); most evaluations need neither.
    head_input = (label_head_input(model, load_split(snapshot, "test"), cfg.batch_size)
                  if temperature is not None or model_view else None)
    calibration = label_calibration(predicted["label"], truth["label"], temperature,
                                    None if head_input is None or temperature is None
                                    else label_logits(model, head_input) * temperature)
    bins = reliability_bins(predicted["label"], truth["label"])
    metrics_path = atomic.write_json(out_dir / "metrics.json", {
        **metrics, "per_class_accuracy": per_class, "slices": slices, "calibration": calibration,
        "reliability": bins, "confusion_matrix": {"classes": snapshot.class_names, "counts": counts.tolist()},
    })
    curves = None
    if history_path is not None:
        curves = str(plot_curves(read_history(history_path), out_dir / "curves.png"))
    predictions = plot_predictions(predicted, snapshot, cfg.grid_size, out_dir / "predictions.png")
    confusion = plot_confusion(counts, snapshot.class_names, out_dir / "confusion.png")
    return EvalReport(
        metrics=metrics, per_class_accuracy=per_class, slices=slices, metrics_path=str(metrics_path),
        curves_path=curves, predictions_path=str(predictions), confusion_path=str(confusion),
        slices_path=str(plot_slices(slices, out_dir / "slices.png")), calibration=calibration,
        reliability_path=str(plot_reliability(bins, calibration["ece"], out_dir / "reliability.png")),
        model_view_path=(str(atomic.write_json(out_dir / MODEL_VIEW, reference_view(head_input)))
                         if head_input is not None and model_view else None),
        fingerprint=hash_file(metrics_path),
    )


def label_calibration(probs: np.ndarray, labels: np.ndarray, temperature: float | None,
                      raw_logits: np.ndarray | None) -> dict[str, float]:
    """`ece` of the label scores; with the `temperature` they were calibrated with, also that
    temperature and the ECE of the scores before it, from the logits as they were (`raw_logits`)."""
    found = {"ece": expected_calibration_error(probs, labels)}
    if temperature is None or raw_logits is None:
        return found
    return {**found, "temperature": temperature,
            "ece_uncalibrated": expected_calibration_error(softmax(raw_logits), labels)}


def test_slices(truth: dict[str, np.ndarray], predicted: dict[str, np.ndarray], snapshot: SnapshotRef,
                cfg: EvaluateConfig) -> dict[str, dict[str, dict]]:
    """Both heads per class and per object size (`multitask.slices`); sizes are the true boxes'
    areas in their original images, which the snapshot keeps the sizes of."""
    original = np.concatenate([batch.numpy() for batch in
                               load_split(snapshot, "test").map(lambda ex: ex["original_size"]).batch(1024)])
    areas = box_areas(pixel_boxes(truth["box"], original, snapshot.image_size, snapshot.resize).numpy())
    correct = np.argmax(predicted["label"], axis=-1) == truth["label"]
    return slice_metrics(correct, box_iou_numpy(truth["box"], predicted["box"]), truth["label"],
                         snapshot.class_names, size_of(areas, cfg.small_area, cfg.large_area))


def metrics_from_predictions(model: keras.Model, truth: dict[str, np.ndarray],
                             predicted: dict[str, np.ndarray]) -> dict[str, float]:
    """What `model.evaluate` reports (`METRIC_NAMES`), from predictions already made: the compiled
    losses and metrics once over the whole split, so each is a mean over its images. Keras'
    `evaluate` gives the same loss and metrics (it weights each batch by its size), but its
    per-head losses are plain means of batch means, off when the last batch is short."""
    model.reset_metrics()
    y_pred = {head: keras.ops.convert_to_tensor(value) for head, value in predicted.items()}
    loss = model.compute_loss(y=truth, y_pred=y_pred, training=False)
    logs = {**model.compute_metrics(None, truth, y_pred), "loss": loss}
    return {ours: round(float(logs[keras_name]), 6) for keras_name, ours in METRIC_NAMES.items()}


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[true, predicted] from two arrays of class indices."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (truth, predicted), 1)
    return counts


def per_class_accuracy(counts: np.ndarray, class_names: list[str]) -> dict[str, float | None]:
    """Share of each class's test images labelled right; None for a class absent from the test split."""
    totals = counts.sum(axis=1)
    return {name: (round(float(counts[i, i] / totals[i]), 6) if totals[i] else None)
            for i, name in enumerate(class_names)}
