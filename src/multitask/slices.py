"""Metrics per slice of the test split: per class and per object size, with bootstrap intervals.

An average hides the class a user cares about and the small objects: each slice reports both
heads (`accuracy` of the label, `mean_iou` of the box) over the test images in it, with their
count and a 95% percentile-bootstrap interval of each mean. Object sizes follow COCO: the true
box's area in pixels of the original image, below `small_area` small, from `large_area` large.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_SAMPLES = 1000
SIZES = ("small", "medium", "large")
SLICE_METRICS = {"label": "accuracy", "box": "mean_iou"}  # head -> its metric in every slice


def box_areas(pixel_boxes: np.ndarray) -> np.ndarray:
    """Areas of `[xmin, ymin, xmax, ymax]` pixel boxes (N x 4)."""
    widths, heights = pixel_boxes[:, 2] - pixel_boxes[:, 0], pixel_boxes[:, 3] - pixel_boxes[:, 1]
    return np.clip(widths, 0, None) * np.clip(heights, 0, None)


def size_of(areas: np.ndarray, small_area: float, large_area: float) -> np.ndarray:
    """`small`, `medium` or `large` for each area."""
    return np.where(areas < small_area, SIZES[0], np.where(areas >= large_area, SIZES[2], SIZES[1]))


def interval(values: np.ndarray, seed: int = 0) -> list[float]:
    """95% percentile-bootstrap interval of the mean of `values` (seeded: the same report twice)."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(BOOTSTRAP_SAMPLES, 10_000_000 // len(values)))  # at most 10 M draws (80 MB) at once
    means = np.concatenate([values[rng.integers(0, len(values), (min(chunk, BOOTSTRAP_SAMPLES - done), len(values)))]
                            .mean(axis=1) for done in range(0, BOOTSTRAP_SAMPLES, chunk)])
    return [round(float(v), 6) for v in np.percentile(means, [2.5, 97.5])]


def summary(per_image: dict[str, np.ndarray], members: np.ndarray) -> dict:
    """`count`, and each metric's mean and interval over the images where `members` is true."""
    count = int(members.sum())
    row: dict = {"count": count}
    for metric, values in per_image.items():
        chosen = values[members].astype(np.float64)
        row[metric] = round(float(chosen.mean()), 6) if count else None
        row[f"{metric}_interval"] = interval(chosen) if count else None
    return row


def slice_metrics(correct: np.ndarray, iou: np.ndarray, labels: np.ndarray, class_names: list[str],
                  sizes: np.ndarray) -> dict[str, dict[str, dict]]:
    """`{"class": {name: row}, "size": {"small" | "medium" | "large": row}}` (rows: `summary`) from
    per-image results: label right or not, the box's IoU, the true class index and the object size."""
    per_image = {"accuracy": correct, "mean_iou": iou}
    return {
        "class": {name: summary(per_image, labels == index) for index, name in enumerate(class_names)},
        "size": {size: summary(per_image, sizes == size) for size in SIZES},
    }


def slice_rows(slices: dict[str, dict[str, dict]]) -> list[dict]:
    """One flat row per slice (`slice`: `class star`, `size small`), for tables."""
    return [{"slice": f"{kind} {name}", **row} for kind, rows in slices.items() for name, row in rows.items()]


def with_interval(row: dict, metric: str) -> str:
    """`0.950 (0.900-1.000)`: a slice's metric and its 95% interval."""
    low, high = row[f"{metric}_interval"]
    return f"{row[metric]:.3f} ({low:.3f}-{high:.3f})"


def cell(text: str) -> str:
    """`text` as one markdown table cell: a class named `a|b` or holding a line break stays one cell."""
    return " ".join(str(text).splitlines()).replace("|", "\\|")


def markdown_table(slices: dict[str, dict[str, dict]]) -> list[str]:
    """The slices with images as markdown table lines: count, each metric with its interval."""
    cells = [[cell(row["slice"]), str(row["count"]), *(with_interval(row, m) for m in SLICE_METRICS.values())]
             for row in slice_rows(slices) if row["count"]]
    return ["| slice | images | accuracy (95% interval) | mean IoU (95% interval) |", "|---|---|---|---|",
            *("| " + " | ".join(line) + " |" for line in cells)]


def in_order(slices: dict[str, dict[str, dict]], class_names: list[str]) -> dict[str, dict[str, dict]]:
    """The slices in class order, then small, medium, large (a JSON file may have sorted them)."""
    order = {"class": class_names, "size": SIZES}
    return {kind: {name: rows[name] for name in order.get(kind, sorted(rows)) if name in rows}
            for kind, rows in slices.items()}
