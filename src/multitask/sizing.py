"""The model's input size when `data.image_size` is not set: from how small the objects are.

A small CNN needs an object of some 20 pixels to tell glyph from glyph: at a fixed 64 px,
glyphs of 8-13 px on photographs of 160 x 72 were too few pixels to classify well. So the
side is chosen for the quarter of smallest training objects: the smallest side of their box,
after the configured resize, must reach `TARGET_PIXELS`. `shapes` and the cluttered set stay at
64 (their objects are 17-28 px there); glyphs on photographs get 128. The side is a multiple
of 16 (the default model halves it three times) between 64 and 128 (each step up costs
training time as its square).
"""

from __future__ import annotations

import math

import numpy as np

from multitask.datasets import catalog
from multitask.records import DatasetRef

TARGET_PIXELS = 20
SMALLEST_SIDE, LARGEST_SIDE, STEP = 64, 128, 16
SAMPLE = 2000  # training examples measured; enough for a quantile, bounded for large datasets


def _relative_sides(dataset: DatasetRef, multi_object: str | None, letterbox: bool) -> np.ndarray:
    """The smaller side of each sampled training box, as a share of the resized square's side."""
    examples = catalog.examples(dataset, "train", multi_object, images=letterbox).filter(lambda ex: ex["keep"])
    sides = []
    for example in examples.take(SAMPLE).as_numpy_iterator():
        ymin, xmin, ymax, xmax = example["bbox"]
        height, width = ymax - ymin, xmax - xmin
        if letterbox:  # the long side of the image fills the square; the short one is padded
            rows, cols = example["image"].shape[:2]
            height, width = height * rows / max(rows, cols), width * cols / max(rows, cols)
        sides.append(min(height, width))
    return np.asarray(sides, dtype=np.float64)


def suggest_image_size(dataset: DatasetRef, multi_object: str | None, resize: str) -> int:
    """The input side at which the smallest quarter of objects is `TARGET_PIXELS` across."""
    sides = _relative_sides(dataset, multi_object, letterbox=resize == "letterbox")
    if sides.size == 0:
        return SMALLEST_SIDE
    quarter = max(float(np.percentile(sides, 25)), 1e-6)
    side = STEP * math.ceil(TARGET_PIXELS / quarter / STEP)
    return int(min(max(side, SMALLEST_SIDE), LARGEST_SIDE))


