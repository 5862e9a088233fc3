"""Pretrained backbones (keras.applications) under this project's two heads.

The backbone keeps its own preprocessing (`include_preprocessing=True`: it takes pixels in
[0, 255], so our [0, 1] images are scaled up first) and runs in inference mode
(`training=False`), so its batch-norm statistics stay those it was trained with while it is
fine-tuned. Its last map (1/32 of the input) feeds the label head; the box head upsamples
it twice to 1/8 for its soft-argmax maps, and the label head also reads the 1/16 map inside
the predicted box (`BoxAlign`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import keras
from keras import layers

from multitask.errors import ConfigError
from multitask.heads import BOX_PRIOR, BoxAlign, SoftArgmaxBox, conv_bn

BACKBONES: dict[str, Callable[..., keras.Model]] = {
    "mobilenet_v3_small": keras.applications.MobileNetV3Small,
    "efficientnet_v2_b0": keras.applications.EfficientNetV2B0,
}
BACKBONE_LAYER = "backbone"  # the name training looks for to freeze and unfreeze it


def keras_cache() -> Path:
    """Where Keras keeps downloaded weights (`$KERAS_HOME/models`, by default `~/.keras/models`)."""
    return Path(os.environ.get("KERAS_HOME") or "~/.keras").expanduser() / "models"


def _imagenet_backbone(preset: str, image_size: int) -> keras.Model:
    """ImageNet weights from Keras' cache, downloaded into it where the network allows."""
    try:
        return BACKBONES[preset](input_shape=(image_size, image_size, 3), include_top=False, weights="imagenet",
                                 include_preprocessing=True)
    except Exception as exc:  # Keras raises a bare Exception for a failed download
        url = re.search(r"https?://\S+?\.h5", str(exc))
        source = url.group(0) if url else f"the {preset} no-top ImageNet weights file"
        target = keras_cache() / (source.rsplit("/", 1)[-1] if url else "")
        raise ConfigError(f"ImageNet weights for {preset} are not in {target} and could not be downloaded: "
                          f"download {source} to that path, or set model.weights to a weights file or "
                          f"to \"none\"") from exc


def backbone(preset: str, image_size: int, weights: str) -> keras.Model:
    """The named backbone without its classifier: weights "imagenet", "none", or a weights file."""
    if weights == "imagenet":
        net = _imagenet_backbone(preset, image_size)
    else:
        net = BACKBONES[preset](input_shape=(image_size, image_size, 3), include_top=False, weights=None,
                               include_preprocessing=True)
        if weights != "none":
            path = Path(weights).expanduser()
            if not path.is_file():
                raise ConfigError(f"model.weights file {path} does not exist")
            try:
                net.load_weights(path)
            except (ValueError, OSError) as exc:
                raise ConfigError(f"model.weights file {path} does not fit {preset}: {exc}") from exc
    net.name = BACKBONE_LAYER
    return net


def pretrained_model(preset: str, num_classes: int, image_size: int, weights: str) -> keras.Model:
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    features = backbone(preset, image_size, weights)(layers.Rescaling(255.0)(inputs), training=False)
    x = conv_bn(features, 128, kernel=1)
    sixteenth = conv_bn(layers.UpSampling2D(interpolation="bilinear")(x), 96)
    eighth = conv_bn(layers.UpSampling2D(interpolation="bilinear")(sixteenth), 48)
    maps = layers.Conv2D(4, 3, padding="same")(eighth)
    box = SoftArgmaxBox(ordered=True, prior=BOX_PRIOR, name="box", dtype="float32")(maps)
    inside = layers.Flatten()(conv_bn(BoxAlign(4)([sixteenth, box]), 128))
    y = layers.Concatenate()([layers.GlobalAveragePooling2D()(features), inside])
    label = layers.Dense(num_classes, activation="softmax", name="label", dtype="float32")(layers.Dropout(0.2)(y))
    return keras.Model(inputs=inputs, outputs={"label": label, "box": box}, name=preset)
