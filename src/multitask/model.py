"""Model presets with outputs named "label" (softmax over classes) and "box" ([0, 1] coords).

`seed` is the starting point's model, layer for layer; `default` is a stronger small CNN
whose box head keeps spatial information (see `SoftArgmaxBox`).
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers, ops

from multitask.config import ModelConfig, TrainConfig
from multitask.errors import ConfigError
from multitask.losses import box_loss
from multitask.metrics import BoxIoUAbove, MeanBoxIoU
from multitask.weighting import with_weighting


def seed_model(num_classes: int, image_size: int) -> keras.Model:
    """The starting point, unchanged but for the output names (6,313,550 params at 10 classes).

    The outputs are pinned to float32, which changes nothing unless `precision` is mixed.
    """
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = layers.Conv2D(32, (3, 3), activation="relu", padding="same")(inputs)
    x = layers.MaxPooling2D(pool_size=(2, 2))(x)
    x = layers.Conv2D(64, (3, 3), activation="relu", padding="same")(x)
    pool2 = layers.MaxPooling2D(pool_size=(2, 2))(x)
    dense1 = layers.Dense(128, activation="relu")(layers.Flatten()(pool2))
    label = layers.Dense(num_classes, activation="softmax", name="label", dtype="float32")(dense1)
    dense2 = layers.Dense(256, activation="relu")(layers.Flatten()(pool2))
    box = layers.Dense(4, activation="sigmoid", name="box", dtype="float32")(dense2)
    return keras.Model(inputs=inputs, outputs={"label": label, "box": box}, name="seed")


@keras.saving.register_keras_serializable(package="multitask")
class SoftArgmaxBox(layers.Layer):
    """Four score maps (ymin, xmin, ymax, xmax) -> a box, each edge as an expected position.

    The y maps are averaged over columns and the x maps over rows, giving one profile per
    edge; a softmax over each profile weights the pixel-edge positions. Coordinates stay in
    [0, 1] and keep sub-pixel precision, which dense heads on flattened features lose.
    """

    def call(self, maps):
        maps = ops.cast(maps, "float32")
        height, width = maps.shape[1], maps.shape[2]
        rows = ops.mean(maps, axis=2)  # (batch, height, 4): profiles along y
        cols = ops.mean(maps, axis=1)  # (batch, width, 4): profiles along x
        y_edges = ops.arange(height, dtype="float32") / height
        x_edges = ops.arange(width, dtype="float32") / width

        def expected(profile, edges):
            return ops.sum(ops.softmax(profile, axis=1) * edges, axis=1)

        return ops.stack([
            expected(rows[..., 0], y_edges),
            expected(cols[..., 1], x_edges),
            expected(rows[..., 2], y_edges + 1.0 / height),
            expected(cols[..., 3], x_edges + 1.0 / width),
        ], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 4)


def _conv_bn(x, filters: int, kernel: int = 3):
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def default_model(num_classes: int, image_size: int) -> keras.Model:
    """BN conv blocks down to a 1/4-size map shared by both heads.

    Label head: one more block, global average pooling, softmax. Box head: the shared map
    upsampled to 1/2 size with a skip from the 1/2-size block, four score maps, soft-argmax.
    """
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = _conv_bn(inputs, 32)
    x = layers.MaxPooling2D()(x)
    half = _conv_bn(x, 48)
    x = layers.MaxPooling2D()(half)
    x = _conv_bn(x, 96)
    shared = _conv_bn(x, 96)

    y = layers.MaxPooling2D()(shared)
    y = _conv_bn(y, 160)
    y = layers.GlobalAveragePooling2D()(y)
    y = layers.Dropout(0.2)(y)
    label = layers.Dense(num_classes, activation="softmax", name="label", dtype="float32")(y)

    b = layers.UpSampling2D(interpolation="bilinear")(shared)
    b = layers.Concatenate()([b, half])
    b = _conv_bn(b, 48, kernel=1)
    b = _conv_bn(b, 32)
    maps = layers.Conv2D(4, 3, padding="same")(b)
    box = SoftArgmaxBox(name="box", dtype="float32")(maps)
    return keras.Model(inputs=inputs, outputs={"label": label, "box": box}, name="default")


PRESETS = {"seed": seed_model, "default": default_model}


def build_model(cfg: ModelConfig, num_classes: int, image_size: int) -> keras.Model:
    if cfg.preset not in PRESETS:
        raise ConfigError(f"unknown model preset {cfg.preset!r} (known: {', '.join(PRESETS)})")
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, the dataset has {num_classes}")
    keras.utils.set_random_seed(cfg.seed)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(cfg.precision)  # layers take the policy when they are created
    try:
        return PRESETS[cfg.preset](num_classes, image_size)
    finally:
        keras.config.set_dtype_policy(previous)


def learning_rate(cfg: TrainConfig, steps_per_epoch: int):
    if cfg.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps=cfg.epochs * steps_per_epoch)
    return cfg.learning_rate


def compile_model(model: keras.Model, cfg: TrainConfig, steps_per_epoch: int) -> keras.Model:
    """The model ready to train with `cfg`'s losses, weighting and metrics.

    Fixed weighting compiles the model itself with Keras' loss weights (sparse categorical
    cross-entropy is the seed's categorical one on integer labels). Learned weightings return
    the same layers in a `WeightedMultiTask`, which computes and weights the head losses itself.
    """
    losses, loss_weights = None, None
    if cfg.weighting == "fixed":
        losses = {"label": keras.losses.SparseCategoricalCrossentropy(name="label_loss"),
                  "box": box_loss(cfg.box_loss, cfg.huber_delta)}
        loss_weights = {"label": cfg.label_loss_weight, "box": cfg.box_loss_weight}
    else:
        model = with_weighting(model, cfg)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate(cfg, steps_per_epoch)),
        loss=losses,
        loss_weights=loss_weights,
        metrics={"label": ["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5")],
                 "box": [MeanBoxIoU(), BoxIoUAbove(0.5)]},
        steps_per_execution=cfg.steps_per_execution,
    )
    return model


def load(path: Path | str, *, compile: bool = True) -> keras.Model:
    """Load a `.keras` file with safe mode on: no Python lambdas are ever deserialised."""
    return keras.saving.load_model(str(path), safe_mode=True, compile=compile)
