"""TFDS datasets that carry a class label and a box, and how each maps to our features.

One table: which TFDS feature holds the label and the candidate boxes, and which TFDS split
expression serves as our train / validation / test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf
import tensorflow_datasets as tfds

# Datasets without a validation split give it 10% of their training split.
_CARVED = {"train": "train[:90%]", "validation": "train[90%:]", "test": "test"}


@dataclass(frozen=True)
class Entry:
    boxes: Callable[[dict], tf.Tensor]  # (objects, 4) candidate boxes
    labels: Callable[[dict], tf.Tensor]  # (objects,) labels, one per box
    label_feature: Callable[[tfds.features.FeaturesDict], tfds.features.ClassLabel]
    splits: dict[str, str]


def _single(box_key: str) -> tuple[Callable, Callable]:
    return (lambda ex: ex[box_key][tf.newaxis], lambda ex: tf.reshape(ex["label"], [1]))


def _top_label(features):
    return features["label"]


CATALOG: dict[str, Entry] = {
    "caltech_birds2011": Entry(*_single("bbox"), _top_label, _CARVED),
    "cars196": Entry(*_single("bbox"), _top_label, _CARVED),
    # the test split's head boxes are all zero: dropped as invalid boxes, and counted
    "oxford_iiit_pet": Entry(*_single("head_bbox"), _top_label, _CARVED),
    "stanford_dogs": Entry(
        lambda ex: ex["objects"]["bbox"],
        lambda ex: tf.fill(tf.shape(ex["objects"]["bbox"])[:1], tf.cast(ex["label"], tf.int64)),
        _top_label, _CARVED),
    "voc/2007": Entry(
        lambda ex: ex["objects"]["bbox"],
        lambda ex: tf.cast(ex["objects"]["label"], tf.int64),
        lambda features: features["objects"]["label"],
        {"train": "train", "validation": "validation", "test": "test"}),
}


def _area(boxes: tf.Tensor) -> tf.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def one_object(entry: Entry, multi_object: str) -> Callable[[dict], dict]:
    """TFDS example -> {"image", "label", "bbox", "keep"}: one object per image.

    `keep` is false for an image with no valid box, or with several objects under "skip".
    """
    def convert(ex: dict) -> dict:
        boxes = tf.reshape(tf.cast(entry.boxes(ex), tf.float32), [-1, 4])
        labels = entry.labels(ex)
        count = tf.shape(boxes)[0]
        valid = count > 0
        index = tf.cond(valid, lambda: tf.cast(tf.argmax(_area(boxes)), tf.int32), lambda: 0) \
            if multi_object == "largest" else 0
        safe_boxes = tf.concat([boxes, tf.constant([[0.0, 0.0, 1.0, 1.0]])], axis=0)
        box = safe_boxes[index]
        keep = valid & (box[2] > box[0]) & (box[3] > box[1])
        if multi_object == "skip":
            keep = keep & tf.equal(count, 1)
        label = tf.concat([labels, tf.zeros([1], tf.int64)], axis=0)[index]
        return {"image": ex["image"], "label": label, "bbox": box, "keep": keep}

    return convert
