"""Exports for serving without this project: a TF SavedModel that takes encoded image bytes,
and a TFLite model that takes the resized, normalised image.

TFLite's `serving_default` signature is the Keras model's: input `image` (1 x S x S x 3 floats in
[0, 1], resized by the policy in `preprocessing.json`), outputs `label` (class scores) and `box`
(ymin, xmin, ymax, xmax in [0, 1] of that input).

The SavedModel's `serving_default` signature runs, inside the graph, what `multitask predict`
runs around the Keras model: decode, the training resize policy, normalisation, and boxes back
to each original image's pixels (`pipeline.pixel_boxes`). TensorFlow decodes the bytes, so a
JPEG's EXIF orientation is not applied (`multitask predict` applies it). Before it decodes an
image, the graph reads the size its header declares and refuses (InvalidArgumentError) any
other format than PNG, JPEG, BMP and WebP, and an image over the model's pixel limit
(`max_pixels` in `preprocessing.json`, `data.max_pixels` when it was trained). GIF is refused
there: its header cannot bound what TensorFlow decodes (`multitask.image_headers`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from multitask import atomic
from multitask.config import DEFAULT_MAX_PIXELS
from multitask.errors import ConfigError, UserError
from multitask.image_headers import GRAPH_FORMATS_SHOWN, declared_pixels
from multitask.pipeline import normalise, pixel_boxes, resize_image

FORMATS = ("saved_model", "tflite")
METADATA = "preprocessing.json"  # in every export of ours
# Everything an export of ours holds, in either format (TensorFlow writes the SavedModel's names).
EXPORT_NAMES = {METADATA, "model.tflite", "saved_model.pb", "fingerprint.pb", "variables", "assets"}


class ImageServing(tf.Module):
    """`serve(images)`: a batch of encoded PNG/JPEG/BMP/WebP bytes -> `label_scores` (N x classes)
    and `box` (N x 4: xmin, ymin, xmax, ymax in pixels of each image)."""

    def __init__(self, model: keras.Model, size: int, policy: str, max_pixels: int):
        super().__init__()
        self.model, self.size, self.policy, self.max_pixels = model, size, policy, max_pixels

    def _prepare(self, encoded: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        pixels = declared_pixels(encoded)
        checks = [
            tf.debugging.Assert(pixels >= 0, [f"not a {GRAPH_FORMATS_SHOWN} image (the SavedModel takes no GIF)"]),
            tf.debugging.Assert(pixels <= self.max_pixels, [
                "the image declares", pixels, f"pixels, over the limit of {self.max_pixels:,} (data.max_pixels)"]),
        ]
        with tf.control_dependencies(checks):
            image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        return normalise(resize_image(image, self.size, self.policy)), tf.shape(image)[:2]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        specs = (tf.TensorSpec([self.size, self.size, 3], tf.float32), tf.TensorSpec([2], tf.int32))
        batch, shapes = tf.map_fn(self._prepare, images, fn_output_signature=specs)
        outputs = self.model(batch, training=False)
        return {"label_scores": outputs["label"], "box": pixel_boxes(outputs["box"], shapes, self.size, self.policy)}


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")


def check_out(out: Path, force: bool = False) -> None:
    """`out` may be replaced: it is absent, empty or an earlier export of ours, or `force` says so.

    The export replaces the folder whole, so anything else in it would be deleted: `--out ~/project`
    must not take the project with it.
    """
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"--out {out} is not a folder: give the path of a folder to write")
    if force or not out.exists():
        return
    names = {entry.name for entry in out.iterdir()}
    if not names or (METADATA in names and names <= EXPORT_NAMES):
        return
    foreign = sorted(names - EXPORT_NAMES) or sorted(names)
    shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
    raise UserError(f"--out {out} holds files an export did not write ({shown}); the export replaces the folder "
                    "whole: choose an empty or new folder, or pass --force to replace it")


def export(model: keras.Model, metadata: dict[str, Any], fmt: str, out: Path, force: bool = False) -> Path:
    """Write `model` as `fmt` into the folder `out` (replaced whole, never half-written);
    `metadata` is the registry's preprocessing (`class_names`, `image_size`, `resize`).
    `out` must be absent, empty or an earlier export unless `force` (`check_out`)."""
    check_format(fmt)
    check_out(out, force)
    size, policy = int(metadata["image_size"]), metadata.get("resize", "stretch")
    with atomic.replace_dir(out) as tmp:
        if fmt == "saved_model":
            serving = ImageServing(model, size, policy, int(metadata.get("max_pixels", DEFAULT_MAX_PIXELS)))
            tf.saved_model.save(serving, str(tmp), signatures={"serving_default": serving.serve})
        else:
            # From the Keras model itself: through a concrete function, Keras 3's variables came
            # out uninitialised (every output NaN, checked with TF 2.21).
            converter = tf.lite.TFLiteConverter.from_keras_model(model)
            # custom layers may need ops beyond TFLite's builtins (TensorFlow's own interpreter has them)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
            (tmp / "model.tflite").write_bytes(converter.convert())
        atomic.write_json(tmp / METADATA, metadata)
    return out
