"""What a snapshot's data looks like, per image: the facts a model card states and drift compares.

Per image: its original height, width and aspect; brightness, contrast and mean colour (of the
snapshot's resized image); the true box's centre, width and height as shares of the image, its
aspect and its area in original pixels; the class. `profile.json` (written with every snapshot)
holds each split's counts per class, quantiles of every feature, and the training split's
values themselves (at most `KEPT` images, evenly spaced) for tests against new data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from multitask.records import PROFILE_FILE, SPLITS

KEPT = 2000  # training images whose feature values a profile keeps
IMAGE_FEATURES = ("height", "width", "aspect", "brightness", "contrast", "red", "green", "blue")
BOX_FEATURES = ("box_centre_x", "box_centre_y", "box_width", "box_height", "box_aspect", "box_area")
FEATURES = IMAGE_FEATURES + BOX_FEATURES
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _batch_features(batch: dict, image_size: int, policy: str) -> dict[str, np.ndarray]:
    from multitask.pipeline import pixel_boxes

    height, width = (batch["original_size"][:, i].astype(np.float64) for i in (0, 1))
    rgb = batch["image"].astype(np.float64) / 255.0
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    xmin, ymin, xmax, ymax = pixel_boxes(batch["box"], batch["original_size"], image_size, policy).numpy().T
    box_w, box_h = np.maximum(xmax - xmin, 1e-6), np.maximum(ymax - ymin, 1e-6)
    return {
        "height": height, "width": width, "aspect": width / height,
        "brightness": luma.mean(axis=(1, 2)), "contrast": luma.std(axis=(1, 2)),
        **{colour: rgb[..., i].mean(axis=(1, 2)) for i, colour in enumerate(("red", "green", "blue"))},
        "box_centre_x": (xmin + xmax) / 2 / width, "box_centre_y": (ymin + ymax) / 2 / height,
        "box_width": box_w / width, "box_height": box_h / height, "box_aspect": box_w / box_h,
        "box_area": box_w * box_h, "label": batch["label"].astype(np.int64),
    }


def features(ds: tf.data.Dataset, image_size: int, policy: str) -> dict[str, np.ndarray]:
    """`FEATURES` and `label` of every example of a snapshot split (`pipeline.load_split`)."""
    columns = ("image", "box", "label", "original_size")
    parts = [_batch_features(batch, image_size, policy)
             for batch in ds.map(lambda ex: {k: ex[k] for k in columns}).batch(256).as_numpy_iterator()]
    names = (*FEATURES, "label")
    return {name: np.concatenate([part[name] for part in parts]) if parts else np.zeros(0) for name in names}


def summarise(values: dict[str, np.ndarray], class_names: list[str]) -> dict:
    """A split's count, images per class and each feature's quantiles."""
    counts = np.bincount(values["label"], minlength=len(class_names)) if len(values["label"]) else np.zeros(0, int)
    return {"count": int(len(values["label"])), "class_counts": dict(zip(class_names, counts.tolist())),
            "quantiles": {name: [round(float(q), 4) for q in np.quantile(values[name], QUANTILES)]
                          for name in FEATURES if len(values[name])}}


def kept(values: dict[str, np.ndarray], limit: int = KEPT) -> dict[str, list]:
    """At most `limit` examples' values, evenly spaced over the split."""
    n = len(values["label"])
    chosen = np.linspace(0, n - 1, min(n, limit)).round().astype(int) if n else np.zeros(0, int)
    return {name: np.round(column[chosen], 5).tolist() for name, column in values.items()}


def write_profile(folder: Path, class_names: list[str], image_size: int, policy: str) -> Path:
    """`profile.json` of the snapshot splits saved in `folder` (before it is renamed into place)."""
    splits = {split: features(tf.data.Dataset.load(str(folder / split)), image_size, policy) for split in SPLITS}
    profile = {"class_names": class_names, "quantiles": list(QUANTILES),
               "splits": {split: summarise(values, class_names) for split, values in splits.items()},
               "train": kept(splits["train"])}
    path = folder / PROFILE_FILE
    path.write_text(json.dumps(profile))
    return path


def read_profile(path: Path | str) -> dict:
    return json.loads(Path(path).read_text())
