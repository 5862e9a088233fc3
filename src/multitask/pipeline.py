"""tf.data: a preprocessed snapshot on disk, then shuffle, batch, box-aware augmentation, prefetch.

The snapshot holds decoded uint8 images already at the model's size, so training never
decodes PNGs or resizes; normalisation to [0, 1] floats happens on the fly.
"""

from __future__ import annotations

import math
from pathlib import Path

import tensorflow as tf

from multitask.atomic import replace_dir
from multitask.augment import Augmentation, augment_batch
from multitask.config import DataConfig
from multitask.data_profile import write_profile
from multitask.datasets import catalog
from multitask.fingerprint import hash_tree
from multitask.records import SPLITS, DatasetRef, SnapshotRef
from multitask.sizing import suggest_image_size

AUTOTUNE = tf.data.AUTOTUNE


def _letterbox(image: tf.Tensor, box: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Scale the longer side to `size`, pad the other evenly; move the box with the image."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = size / tf.reduce_max(shape)
    new = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), 1)
    resized = tf.image.resize(image, new, antialias=True)
    top, left = (size - new[0]) // 2, (size - new[1]) // 2
    padded = tf.image.pad_to_bounding_box(resized, top, left, size, size)
    offset = tf.cast(tf.stack([top, left, top, left]), tf.float32)
    extent = tf.cast(tf.stack([new[0], new[1], new[0], new[1]]), tf.float32)
    return padded, (box * extent + offset) / size


def pixel_boxes(boxes, shapes, size: int, policy: str = "stretch") -> tf.Tensor:
    """Undo `resize_example` for predicted boxes: model [ymin, xmin, ymax, xmax] in [0, 1]
    (N x 4) and original (height, width) (N x 2) -> [xmin, ymin, xmax, ymax] in each original
    image's pixels, clipped to it. TensorFlow ops, so exported models run the same code.

    A head with four free outputs (the `seed` preset's) can predict min > max; the corners
    are sorted, so a box is never inverted."""
    y1, x1, y2, x2 = tf.unstack(tf.cast(boxes, tf.float32), axis=-1)
    ymin, ymax, xmin, xmax = tf.minimum(y1, y2), tf.maximum(y1, y2), tf.minimum(x1, x2), tf.maximum(x1, x2)
    height, width = tf.unstack(tf.cast(shapes, tf.float32), axis=-1)
    if policy == "letterbox":  # the inverse of `_letterbox`
        scale = size / tf.maximum(height, width)
        new_h, new_w = tf.maximum(tf.round(height * scale), 1.0), tf.maximum(tf.round(width * scale), 1.0)
        top, left = tf.floor((size - new_h) / 2), tf.floor((size - new_w) / 2)
        ymin, ymax = ((v * size - top) / new_h for v in (ymin, ymax))
        xmin, xmax = ((v * size - left) / new_w for v in (xmin, xmax))

    def clip(v: tf.Tensor, limit: tf.Tensor) -> tf.Tensor:
        return tf.clip_by_value(v * limit, 0.0, limit)

    return tf.stack([clip(xmin, width), clip(ymin, height), clip(xmax, width), clip(ymax, height)], axis=-1)


def box_to_pixels(box, height: int, width: int, size: int, policy: str = "stretch") -> list[float]:
    """`pixel_boxes` for one box, rounded to 1/100 pixel: `[xmin, ymin, xmax, ymax]`."""
    pixels = pixel_boxes([box], [[height, width]], size, policy)[0].numpy()
    return [round(float(v), 2) for v in pixels]


def resize_example(example: dict, image_size: int, policy: str = "stretch") -> dict:
    """-> {"image": uint8[S, S, 3], "label": int32, "box": float32[4], "filename": string,
    "original_size": int32[2]} (the image's height and width before resizing: object sizes, data drift).

    Stretching keeps relative box coordinates unchanged; letterboxing shifts and scales them.
    """
    box = tf.cast(example["bbox"], tf.float32)
    if policy == "letterbox":
        image, box = _letterbox(example["image"], box, image_size)
    else:
        image = tf.image.resize(example["image"], (image_size, image_size), antialias=True)
    return {
        "image": tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8),
        "label": tf.cast(example["label"], tf.int32),
        "box": box,
        "filename": example["filename"],
        "original_size": tf.shape(example["image"], out_type=tf.int32)[:2],
    }


def resize_image(image, image_size: int, policy: str = "stretch") -> tf.Tensor:
    """One image without a box (prediction, serving) through `resize_example`: uint8 [S, S, 3]."""
    example = {"image": image, "label": 0, "bbox": tf.zeros(4), "filename": ""}
    return resize_example(example, image_size, policy)["image"]


def _count(ds: tf.data.Dataset) -> tuple[int, int]:
    """(all examples, kept examples) of a split, reading labels and boxes only."""
    total, kept = ds.reduce((0, 0), lambda acc, ex: (acc[0] + 1, acc[1] + tf.cast(ex["keep"], tf.int32)))
    return int(total), int(kept)


def build_snapshot(dataset: DatasetRef, data: DataConfig, out_dir: Path) -> SnapshotRef:
    """Decode, filter and resize every split once and save it with `tf.data.Dataset.save`.

    Without a configured `data.image_size`, the side follows the objects' sizes (`sizing`).
    """
    size = data.image_size or suggest_image_size(dataset, data.multi_object, data.resize)
    kept, dropped = {}, {}
    with replace_dir(out_dir) as tmp:
        for split in SPLITS:
            total, kept[split] = _count(catalog.examples(dataset, split, data.multi_object, images=False))
            dropped[split] = total - kept[split]
            ds = catalog.examples(dataset, split, data.multi_object).filter(lambda ex: ex["keep"])
            ds = ds.map(lambda ex: resize_example(ex, size, data.resize), num_parallel_calls=AUTOTUNE)
            ds.save(str(tmp / split))
        write_profile(tmp, dataset.class_names, size, data.resize)
    return SnapshotRef(
        path=str(out_dir), class_names=dataset.class_names, splits=kept, dropped=dropped,
        image_size=size, resize=data.resize, fingerprint=hash_tree(out_dir),
    )


def normalise(image: tf.Tensor) -> tf.Tensor:
    """uint8 pixels -> float32 in [0, 1], the scale every model here expects."""
    return tf.cast(image, tf.float32) / 255.0


def _to_keras(example: dict) -> tuple[tf.Tensor, dict]:
    return normalise(example["image"]), {"label": example["label"], "box": example["box"]}


def _augmented(augmentation: Augmentation):
    def apply(batch: tuple[tf.Tensor, dict], seed: tf.Tensor) -> tuple[tf.Tensor, dict]:
        images, targets = batch
        images, boxes = augment_batch(images, targets["box"], seed, augmentation)
        return images, {"label": targets["label"], "box": boxes}
    return apply


def _shuffled_batches(ds: tf.data.Dataset, size: int, buffer: int, batch_size: int,
                      key: tf.Tensor) -> tf.data.Dataset:
    """Batches of the `size` examples of `ds` in an order drawn from `key` alone
    (`Dataset.shuffle` takes no tensor seed). Memory: one window of up to `buffer` examples,
    as one tensor (about twice `Dataset.shuffle`'s buffer while it is built).

    A split of at most `buffer` examples is shuffled uniformly. A longer one is cut into
    windows of `buffer`, each put in a random order; the first window is shorter by a random
    amount, so which examples can share a batch changes from one key to the next.
    """
    if size <= buffer:
        windows = ds.batch(buffer)
    else:
        offset = tf.random.stateless_uniform([], seed=tf.stack([key, -1]), maxval=buffer, dtype=tf.int64)
        windows = ds.take(offset).batch(buffer).concatenate(ds.skip(offset).batch(buffer))

    def in_random_order(index: tf.Tensor, window: dict) -> tf.data.Dataset:
        order = tf.argsort(tf.random.stateless_uniform(tf.shape(window["label"])[:1], seed=tf.stack([key, index])))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size).map(
            lambda picked: {name: tf.gather(values, picked) for name, values in window.items()})

    return windows.enumerate().flat_map(in_random_order).rebatch(batch_size)  # whole batches across windows


def load_split(snapshot: SnapshotRef, split: str) -> tf.data.Dataset:
    return tf.data.Dataset.load(str(Path(snapshot.path) / split))


def make_dataset(
    snapshot: SnapshotRef,
    split: str,
    batch_size: int,
    *,
    shuffle_buffer: int = 0,
    augmentation: Augmentation | None = None,
    seed: int = 0,
    epoch: tf.Variable | None = None,
) -> tf.data.Dataset:
    """Batches of `(image, {"label", "box"})` for Keras; shuffled and augmented only when asked.

    An epoch's shuffle order and augmentations are drawn from `seed` and the epoch number held
    in `epoch` (read each time an iteration starts; 0 when None), and from nothing else: a
    training resumed at epoch k sees the batches that an uninterrupted one saw at epoch k.
    """
    def one_epoch(_: tf.Tensor) -> tf.data.Dataset:
        number = tf.constant(0, tf.int64) if epoch is None else tf.cast(epoch, tf.int64)
        key = tf.random.stateless_uniform([], seed=tf.stack([tf.constant(seed, tf.int64), number]),
                                          maxval=2**31 - 1, dtype=tf.int64)
        ds = load_split(snapshot, split)
        if shuffle_buffer:
            ds = _shuffled_batches(ds, snapshot.splits[split], shuffle_buffer, batch_size, key)
        else:
            ds = ds.batch(batch_size)
        ds = ds.map(_to_keras, num_parallel_calls=AUTOTUNE)
        if augmentation is not None and augmentation.active:
            seeds = tf.data.Dataset.range(2**62).map(lambda batch: tf.stack([key, batch]))
            ds = tf.data.Dataset.zip(ds, seeds).map(_augmented(augmentation), num_parallel_calls=AUTOTUNE)
        return ds

    batches = math.ceil(snapshot.splits[split] / batch_size)  # flat_map hides it; Keras wants it
    epoch_data = tf.data.Dataset.range(1).flat_map(one_epoch)
    return epoch_data.apply(tf.data.experimental.assert_cardinality(batches)).prefetch(AUTOTUNE)
