"""tf.data: a preprocessed snapshot on disk, then shuffle, box-aware augmentation, batch, prefetch.

The snapshot holds decoded uint8 images already at the model's size, so training never
decodes PNGs or resizes; normalisation to [0, 1] floats happens on the fly.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
import tensorflow_datasets as tfds

from multitask.atomic import replace_dir
from multitask.errors import DataError
from multitask.fingerprint import hash_tree
from multitask.records import DatasetRef, SnapshotRef

SPLITS = ("train", "validation", "test")
AUTOTUNE = tf.data.AUTOTUNE


def resize_example(example: dict, image_size: int) -> dict:
    """TFDS example -> {"image": uint8[S, S, 3], "label": int32, "box": float32[4]}.

    Stretching keeps relative box coordinates unchanged.
    """
    image = tf.image.resize(example["image"], (image_size, image_size), antialias=True)
    return {
        "image": tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8),
        "label": tf.cast(example["label"], tf.int32),
        "box": tf.cast(example["bbox"], tf.float32),
    }


def build_snapshot(dataset: DatasetRef, image_size: int, out_dir: Path) -> SnapshotRef:
    """Decode and resize every split once and save it with `tf.data.Dataset.save`."""
    builder = tfds.builder_from_directory(dataset.path)
    missing = [s for s in SPLITS if s not in builder.info.splits]
    if missing:
        raise DataError(f"dataset {dataset.spec!r} has no {', '.join(missing)} split")
    with replace_dir(out_dir) as tmp:
        for split in SPLITS:
            ds = builder.as_dataset(split=split, shuffle_files=False)
            ds = ds.map(lambda ex: resize_example(ex, image_size), num_parallel_calls=AUTOTUNE)
            ds.save(str(tmp / split))
    return SnapshotRef(
        path=str(out_dir), class_names=dataset.class_names, splits=dataset.splits,
        image_size=image_size, fingerprint=hash_tree(out_dir),
    )


def flip_box(box: tf.Tensor) -> tf.Tensor:
    """Mirror [ymin, xmin, ymax, xmax] left-right: x becomes 1 - x and min/max swap."""
    ymin, xmin, ymax, xmax = tf.unstack(box, axis=-1)
    return tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)


def _random_flip(example: dict, coin: tf.Tensor) -> dict:
    flip = tf.equal(coin % 2, 0)
    return {
        "image": tf.cond(flip, lambda: tf.reverse(example["image"], axis=[1]), lambda: example["image"]),
        "label": example["label"],
        "box": tf.cond(flip, lambda: flip_box(example["box"]), lambda: example["box"]),
    }


def normalise(image: tf.Tensor) -> tf.Tensor:
    """uint8 pixels -> float32 in [0, 1], the scale every model here expects."""
    return tf.cast(image, tf.float32) / 255.0


def _to_keras(example: dict) -> tuple[tf.Tensor, dict]:
    return normalise(example["image"]), {"label": example["label"], "box": example["box"]}


def load_split(snapshot: SnapshotRef, split: str) -> tf.data.Dataset:
    return tf.data.Dataset.load(str(Path(snapshot.path) / split))


def make_dataset(
    snapshot: SnapshotRef,
    split: str,
    batch_size: int,
    *,
    shuffle_buffer: int = 0,
    augment_flip: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batches of `(image, {"label", "box"})` for Keras; shuffled and flipped only when asked.

    Shuffle order and flips are drawn from `seed`, so two runs see the same batches.
    """
    ds = load_split(snapshot, split)
    if shuffle_buffer:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if augment_flip:
        coins = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(ds, coins).map(_random_flip, num_parallel_calls=AUTOTUNE)
    ds = ds.map(_to_keras, num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size).prefetch(AUTOTUNE)
