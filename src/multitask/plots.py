"""Figures of an evaluation (training curves, a grid of test predictions, the confusion matrix, the
metrics per slice, the reliability diagram), of data drift, and of a tuning study (the search).

matplotlib's `Figure`, not pyplot: no GUI backend, safe in worker threads.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from multitask import atomic
from multitask.pipeline import load_split
from multitask.records import SnapshotRef
from multitask.slices import SLICE_METRICS, slice_rows

_NAMED_TICKS = 30  # more classes than this: the confusion matrix shows no tick labels


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


def plot_predictions(predicted: dict[str, np.ndarray], snapshot: SnapshotRef, grid: int, path: Path) -> Path:
    """The first grid x grid test images with the model's outputs for them (`predicted`: the
    test split's, in order): true box green, predicted box orange; title 'true / predicted'."""
    examples = list(load_split(snapshot, "test").take(grid * grid).as_numpy_iterator())
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


def plot_confusion(counts: np.ndarray, class_names: list[str], path: Path) -> Path:
    """Rows: true class; columns: predicted; each row as shares of that class's images."""
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    side = min(3 + 0.35 * len(class_names), 14)
    fig = Figure(figsize=(side, side))
    ax = fig.subplots()
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix ({int(counts.sum())} test images)")
    if len(class_names) <= _NAMED_TICKS:
        ticks = range(len(class_names))
        ax.set_xticks(ticks, class_names, rotation=90, fontsize=8)
        ax.set_yticks(ticks, class_names, fontsize=8)
        for (i, j), n in np.ndenumerate(counts):
            if n:
                ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                        color="white" if shares[i, j] > 0.5 else "black")
    return atomic.write_png(path, fig)


def plot_slices(slices: dict[str, dict[str, dict]], path: Path) -> Path:
    """Accuracy and mean IoU of every slice with images, with their 95% intervals and counts."""
    rows = [row for row in slice_rows(slices) if row["count"]]
    fig = Figure(figsize=(11, 1.2 + 0.28 * len(rows)))
    for ax, metric in zip(fig.subplots(1, 2, sharey=True), SLICE_METRICS.values()):
        values = np.array([row[metric] for row in rows])
        low, high = (np.array([row[f"{metric}_interval"][i] for row in rows]) for i in (0, 1))
        ax.barh(range(len(rows)), values, xerr=[values - low, high - values], color="tab:blue", alpha=0.7,
                error_kw={"ecolor": "black", "capsize": 2})
        ax.set_xlim(0, 1.08)
        ax.set_title(f"{metric} (95% interval)")
        ax.grid(axis="x", alpha=0.3)
    ax.set_yticks(range(len(rows)), [f"{row['slice']} (n={row['count']})" for row in rows])
    ax.invert_yaxis()
    return atomic.write_png(path, fig)


def plot_reliability(bins: list[dict], ece: float, path: Path) -> Path:
    """The reliability diagram: each score bin's accuracy against its mean score (the diagonal is a
    score that comes true as often as it says), and how many test images each bin holds."""
    fig = Figure(figsize=(9, 3.8))
    diagram, counts = fig.subplots(1, 2)
    width = bins[0]["high"] - bins[0]["low"]
    filled = [row for row in bins if row["count"]]
    diagram.bar([row["low"] for row in filled], [row["accuracy"] for row in filled], width=width, align="edge",
                color="tab:blue", alpha=0.7, edgecolor="black", label="accuracy")
    diagram.plot([row["confidence"] for row in filled], [row["accuracy"] for row in filled], "o", color="black",
                 markersize=3, label="mean score")
    diagram.plot([0, 1], [0, 1], "--", color="grey")
    diagram.set(xlim=(0, 1), ylim=(0, 1), xlabel="top score", ylabel="accuracy", title=f"reliability (ECE {ece:.3f})")
    diagram.legend(loc="upper left")
    counts.bar([row["low"] for row in bins], [row["count"] for row in bins], width=width, align="edge",
               color="tab:grey", edgecolor="black")
    counts.set(xlim=(0, 1), xlabel="top score", ylabel="test images", title="images per bin")
    return atomic.write_png(path, fig)


def plot_drift(reference: dict[str, Any], new: dict[str, Any], rows: list[dict], path: Path) -> Path:
    """Each numeric feature's distribution in the training data and in the new data (drifted ones
    titled in red)."""
    numeric = [row for row in rows if row["feature"] != "classes"]
    columns = 4
    fig = Figure(figsize=(14, 2.3 * math.ceil(len(numeric) / columns)))
    for ax, row in zip(fig.subplots(math.ceil(len(numeric) / columns), columns).flat, numeric):
        old, now = np.asarray(reference[row["feature"]], float), np.asarray(new[row["feature"]], float)
        edges = np.histogram_bin_edges(np.concatenate([old, now]), bins=30)
        ax.hist(old, bins=edges, density=True, alpha=0.5, label="trained on")
        ax.hist(now, bins=edges, density=True, alpha=0.5, label="new")
        ax.set_title(f"{row['feature']}  KS {row['statistic']:.2f}", color="tab:red" if row["drifted"] else "black",
                     fontsize=9)
        ax.tick_params(labelsize=7)
    fig.axes[0].legend(fontsize=7)
    for ax in fig.axes[len(numeric):]:
        ax.set_visible(False)
    fig.tight_layout()
    return atomic.write_png(path, fig)


def plot_search(rows: list[dict], keys: dict[str, bool], path: Path) -> Path:
    """A study's trials: the best score so far over trial numbers, then the score against each searched
    setting (`keys`: setting -> on a log scale; choices as categories). Complete trials in blue, pruned
    ones (their last score) in grey."""
    fig = Figure(figsize=(4.2 * (1 + len(keys)), 3.6))
    axes = fig.subplots(1, 1 + len(keys), squeeze=False)[0]
    scored = [row for row in rows if row["value"] is not None]
    complete = [row for row in scored if row["state"] == "complete"]
    best, running = [], -np.inf
    for row in complete:
        running = max(running, row["value"])
        best.append(running)
    axes[0].step([row["trial"] for row in complete], best, where="post", label="best so far")
    for ax, key in [(axes[0], "trial"), *zip(axes[1:], keys)]:
        if keys.get(key):
            ax.set_xscale("log")
        for state, colour in (("complete", "tab:blue"), ("pruned", "tab:grey")):
            points = [row for row in scored if row["state"] == state]
            ax.scatter([_axis_value(row[key]) for row in points], [row["value"] for row in points], s=18,
                       color=colour, label=state)
        ax.set_xlabel(key)
        ax.set_ylabel("validation score")
        ax.grid(alpha=0.3)
    axes[0].legend()
    return atomic.write_png(path, fig)


def _axis_value(value):
    return str(value) if isinstance(value, str | bool) else value
