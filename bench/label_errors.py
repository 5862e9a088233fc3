"""Where a trained model's label errors come from: label accuracy where the predicted box hits the
object (IoU >= 0.5) and where it misses, per split, what the missed boxes look like, and how
misses and label errors fall across the quarters of object size; for the default box head, how
much of its fifth ("where") map lies on the object where the box hits and where it misses.

    python bench/label_errors.py RUN_DIR/model.keras SNAPSHOT_DIR

SNAPSHOT_DIR is a `build_snapshot` step folder (one `tf.data` save per split), e.g.
`$MULTITASK_HOME/steps/build_snapshot/<key>`. Used for docs/quality.md ("What held labels back").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from multitask.compiling import where_map
from multitask.losses import WhereLoss
from multitask.metrics import box_iou_numpy
from multitask.model import load
from multitask.pipeline import normalise

SPLITS = ("train", "validation", "test")


def _images(split_dir: Path) -> tf.data.Dataset:
    return tf.data.Dataset.load(str(split_dir)).map(lambda ex: normalise(ex["image"])).batch(128)


def with_where_map(model: keras.Model) -> keras.Model:
    """The model with a third output, the box head's fifth map, where it has one (`SoftArgmaxBox`)."""
    maps = where_map(model)
    if maps is None:
        return model
    return keras.Model(model.input, {**model.output, "where": maps})


def predictions(model, split_dir: Path) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Labels, true boxes and the model's outputs for one split, in order."""
    data = tf.data.Dataset.load(str(split_dir))
    predicted = model.predict(_images(split_dir), verbose=0)
    labels = np.array([ex["label"] for ex in data.as_numpy_iterator()]).reshape(-1)
    boxes = np.array([ex["box"] for ex in data.as_numpy_iterator()], dtype=np.float32)
    return labels, boxes, predicted


def _area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def report(split: str, labels, boxes, guessed, predicted_boxes) -> None:
    iou = box_iou_numpy(boxes, predicted_boxes)
    right, hit = guessed == labels, iou >= 0.5
    print(f"{split}: {len(labels)} images, label accuracy {right.mean():.4f}, box IoU>=0.5 {hit.mean():.4f}")
    print(f"  label accuracy where the box hits: {right[hit].mean():.4f} ({hit.sum()} images)")
    if (~hit).any():
        ratio = np.percentile(_area(predicted_boxes[~hit]) / _area(boxes[~hit]), [10, 50, 90])
        print(f"  label accuracy where it misses: {right[~hit].mean():.4f} ({(~hit).sum()} images); missed "
              f"boxes' area / the object's, 10/50/90th percentile: {np.round(ratio, 2).tolist()}")
    by_size(right, hit, np.sqrt(_area(boxes)))


def by_size(right: np.ndarray, hit: np.ndarray, side: np.ndarray) -> None:
    """Box misses and label errors per quarter of object size (square root of the box's area)."""
    edges = np.percentile(side, [0, 25, 50, 75, 100])
    quarter = np.clip(np.searchsorted(edges, side, side="right") - 1, 0, 3)
    for q in range(4):
        inside = quarter == q
        print(f"  objects {edges[q]:.3f}-{edges[q + 1]:.3f} of the side: {inside.sum()} images, "
              f"{(~hit[inside]).sum()} box misses, {(~right[inside]).sum()} label errors")


def report_where_map(maps: np.ndarray, boxes: np.ndarray, predicted_boxes: np.ndarray) -> None:
    """The box head's score maps (`SoftArgmaxBox`): how much of the fifth map's softmax mass lies on
    the object (what `WhereLoss` trains), and is its peak there, where the box hits and misses."""
    count, height, width = maps.shape[:3]
    on_object = np.exp(-keras.ops.convert_to_numpy(WhereLoss(reduction=None)(boxes, maps)))
    rows, cols = (np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width
    peak = maps[..., 4].reshape(count, -1).argmax(axis=1)
    peak_row, peak_col = rows[peak // width], cols[peak % width]
    peak_inside = ((peak_row >= boxes[:, 0]) & (peak_row <= boxes[:, 2])
                   & (peak_col >= boxes[:, 1]) & (peak_col <= boxes[:, 3]))
    hit = box_iou_numpy(boxes, predicted_boxes) >= 0.5
    print(f"  where map: median mass on the object {np.median(on_object[hit]):.2f} where the box hits", end="")
    if (~hit).any():
        print(f", {np.median(on_object[~hit]):.2f} where it misses; its peak on the object in "
              f"{peak_inside[~hit].sum()} of {(~hit).sum()} misses", end="")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("snapshot", type=Path)
    args = parser.parse_args()
    model = with_where_map(load(args.model, compile=False))
    for split in SPLITS:
        if (args.snapshot / split).exists():
            labels, boxes, predicted = predictions(model, args.snapshot / split)
            report(split, labels, boxes, predicted["label"].argmax(-1), predicted["box"])
            if "where" in predicted:
                report_where_map(predicted["where"], boxes, predicted["box"])


if __name__ == "__main__":
    main()
