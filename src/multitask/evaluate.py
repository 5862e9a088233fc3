"""evaluate(): test-split metrics, `metrics.json`, a training-curves PNG and a predictions PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # not pyplot: no GUI backend, safe in worker threads
from matplotlib.patches import Rectangle

from multitask import atomic
from multitask.config import EvaluateConfig
from multitask.fingerprint import hash_file
from multitask.model import load
from multitask.pipeline import load_split, make_dataset, normalise
from multitask.records import EvalReport, SnapshotRef

# Keras log name -> our metric name (the JSON contract of `multitask train --json`).
METRIC_NAMES = {
    "loss": "loss", "label_loss": "label_loss", "box_loss": "box_loss",
    "label_accuracy": "accuracy", "label_top5": "top5_accuracy",
    "box_mean_iou": "mean_iou", "box_iou50": "iou50",
}


def plot_curves(history: list[dict[str, float]], path: Path) -> Path:
    """Loss, accuracy and mean IoU per epoch, training and validation."""
    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(13, 3.6))
    axes = fig.subplots(1, 3)
    for ax, key, title in zip(axes, ("loss", "label_accuracy", "box_mean_iou"),
                              ("total loss", "label accuracy", "box mean IoU")):
        for prefix, style in (("", "-o"), ("val_", "--o")):
            values = [row.get(prefix + key, np.nan) for row in history]
            ax.plot(epochs, values, style, label=(prefix or "train_").rstrip("_"), markersize=3)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    return atomic.write_png(path, fig)


def _draw_box(ax, box, size: int, colour: str) -> None:
    ymin, xmin, ymax, xmax = np.asarray(box) * size
    ax.add_patch(Rectangle((xmin - 0.5, ymin - 0.5), xmax - xmin, ymax - ymin,
                               fill=False, edgecolor=colour, linewidth=1.5))


def plot_predictions(model, snapshot: SnapshotRef, grid: int, path: Path) -> Path:
    """A grid of test images: true box green, predicted box orange; title 'true / predicted'."""
    examples = list(load_split(snapshot, "test").take(grid * grid).as_numpy_iterator())
    images = np.stack([e["image"] for e in examples])
    predicted = model.predict(normalise(images), verbose=0)
    names = snapshot.class_names
    fig = Figure(figsize=(2.2 * grid, 2.4 * grid))
    axes = fig.subplots(grid, grid, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, example) in enumerate(zip(axes.flat, examples)):
        label = int(np.argmax(predicted["label"][i]))
        ax.imshow(example["image"])
        _draw_box(ax, example["box"], snapshot.image_size, "lime")
        _draw_box(ax, predicted["box"][i], snapshot.image_size, "orange")
        colour = "black" if label == example["label"] else "red"
        ax.set_title(f"{names[example['label']]} / {names[label]} {predicted['label'][i][label]:.2f}",
                     fontsize=8, color=colour)
    return atomic.write_png(path, fig)


def evaluate(model_path: str, snapshot: SnapshotRef, cfg: EvaluateConfig, out_dir: Path,
             history_path: str | None = None) -> EvalReport:
    """Evaluate a `.keras` model on the test split and write the report files to `out_dir`.

    The training-curves PNG needs the training history; a registered model fetched from
    the registry (a champion) has none, so it gets the metrics and the predictions grid.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load(model_path)
    logs = model.evaluate(make_dataset(snapshot, "test", cfg.batch_size), return_dict=True, verbose=0)
    metrics = {ours: round(float(logs[keras_name]), 6) for keras_name, ours in METRIC_NAMES.items()}
    metrics_path = atomic.write_json(out_dir / "metrics.json", metrics)
    curves = None
    if history_path is not None:
        curves = str(plot_curves(json.loads(Path(history_path).read_text()), out_dir / "curves.png"))
    predictions = plot_predictions(model, snapshot, cfg.grid_size, out_dir / "predictions.png")
    return EvalReport(
        metrics=metrics, metrics_path=str(metrics_path), curves_path=curves,
        predictions_path=str(predictions), fingerprint=hash_file(metrics_path),
    )
