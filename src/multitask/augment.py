"""Box-aware augmentation of training batches: flip, zoom and shift that keep the object in frame, colour,
patches of another image's background.

Every example draws its own transform from a per-batch stateless seed, so two runs with the
same `train.seed` see the same augmented batches. The geometry is one affine transform per
image (`keras.ops.image.affine_transform`); the box moves by the same scale and offset, which
are chosen so the whole object stays inside the frame. Keras' `RandomZoom` and
`RandomTranslation` take boxes too, but draw from one fixed range for every image and clip
a box pushed out of the frame (a glyph half outside keeps a box that no longer fits it), and
`RandomRotation` returned wrong relative boxes when checked (Keras 3.15): so not those.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf
from keras import ops

from multitask.config import TrainConfig


@dataclass(frozen=True)
class Augmentation:
    flip: bool = False  # random horizontal flip
    scale: float = 0.0  # zoom by a factor in [1 - scale, 1 + scale], limited so the object still fits
    shift: float = 0.0  # 0: zoom about the centre; 1: move the object anywhere it fits
    colour: float = 0.0  # brightness +-colour, contrast and saturation x [1 - colour, 1 + colour]

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> Augmentation:
        return cls(cfg.augment_flip, cfg.augment_scale, cfg.augment_shift, cfg.augment_colour)

    @property
    def active(self) -> bool:
        return self.flip or self.scale > 0 or self.shift > 0 or self.colour > 0


def flip_box(box: tf.Tensor) -> tf.Tensor:
    """Mirror [ymin, xmin, ymax, xmax] left-right: x becomes 1 - x and min/max swap."""
    ymin, xmin, ymax, xmax = tf.unstack(box, axis=-1)
    return tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)


def _flip(images: tf.Tensor, boxes: tf.Tensor, coin: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    flip = coin < 0.5
    return (tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images),
            tf.where(flip[:, None], flip_box(boxes), boxes))


def _placement(low: tf.Tensor, extent: tf.Tensor, scale: tf.Tensor, shift: float, u: tf.Tensor) -> tf.Tensor:
    """Offset along one axis so the scaled interval [low, low + extent] lands inside [0, 1]."""
    room = 1.0 - scale * extent
    centred = tf.clip_by_value(0.5 + scale * (low - 0.5), 0.0, room)
    anywhere = u * room
    return centred + shift * (anywhere - centred) - scale * low


def _zoom_and_shift(images, boxes, u, aug: Augmentation) -> tuple[tf.Tensor, tf.Tensor]:
    """New box = scale * box + offset; the image follows by the inverse map of output pixels."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    largest = tf.maximum(ymax - ymin, xmax - xmin)
    scale = tf.minimum(1.0 + aug.scale * (2.0 * u[:, 0] - 1.0), 0.98 / tf.maximum(largest, 1e-3))
    dy = _placement(ymin, ymax - ymin, scale, aug.shift, u[:, 1])
    dx = _placement(xmin, xmax - xmin, scale, aug.shift, u[:, 2])
    height, width = tf.cast(tf.shape(images)[1], tf.float32), tf.cast(tf.shape(images)[2], tf.float32)
    zeros = tf.zeros_like(scale)
    # output pixel centre (x + 0.5, y + 0.5) samples input at ((x + 0.5 - dx W) / s - 0.5, ...)
    transform = tf.stack([1.0 / scale, zeros, (0.5 - dx * width) / scale - 0.5,
                          zeros, 1.0 / scale, (0.5 - dy * height) / scale - 0.5, zeros, zeros], axis=-1)
    moved = ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="constant")
    offset = tf.stack([dy, dx, dy, dx], axis=-1)
    return moved, boxes * scale[:, None] + offset


def _colour(images: tf.Tensor, u: tf.Tensor, amount: float) -> tf.Tensor:
    """Per image: brightness shift, contrast and saturation factors; pixels stay in [0, 1]."""
    brightness = amount * (2.0 * u[:, 0] - 1.0)
    contrast = 1.0 + amount * (2.0 * u[:, 1] - 1.0)
    saturation = 1.0 + amount * (2.0 * u[:, 2] - 1.0)
    grey = tf.reduce_mean(images, axis=-1, keepdims=True)
    images = grey + (images - grey) * saturation[:, None, None, None]
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    images = mean + (images - mean) * contrast[:, None, None, None] + brightness[:, None, None, None]
    return tf.clip_by_value(images, 0.0, 1.0)


def augment_batch(images: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor,
                  aug: Augmentation) -> tuple[tf.Tensor, tf.Tensor]:
    """A batch of float images in [0, 1] and [ymin, xmin, ymax, xmax] boxes, augmented."""
    u = tf.random.stateless_uniform((tf.shape(images)[0], 7), seed=seed)
    if aug.flip:
        images, boxes = _flip(images, boxes, u[:, 0])
    if aug.scale > 0 or aug.shift > 0:
        images, boxes = _zoom_and_shift(images, boxes, u[:, 1:4], aug)
    if aug.colour > 0:
        images = _colour(images, u[:, 4:7], aug.colour)
    return images, boxes
