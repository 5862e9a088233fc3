"""Model presets with outputs named "label" (softmax over classes) and "box" ([0, 1] coords).

`seed` is the starting point's model, layer for layer; `default` is a stronger small CNN
whose box head keeps spatial information (see `SoftArgmaxBox`) and whose label head can
look inside the predicted box (see `BoxAlign`).
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
from keras import layers
from keras.src.random import seed_generator

from multitask import atomic
from multitask.backbones import BACKBONES, pretrained_model
from multitask.compiling import build_loss_trackers
from multitask.config import ModelConfig, image_size_problem
from multitask.errors import ConfigError, UserError
from multitask.fingerprint import hash_file
from multitask.heads import BOX_PRIOR, BoxAlign, SoftArgmaxBox, conv_bn
from multitask.precision import resolve
from multitask.records import ModelRef

MAX_CONFIG_BYTES = 64 << 20
# Layers of options measured and removed: a model file holding one is refused with what to do.
RETIRED_LAYERS = {"WherePool": 'label pooling "where", removed on 2026-12-06 after it measured no gain'}


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


def _box_head(shared, half, eighth, cfg: ModelConfig):
    """Four score maps at 1/2 size (1/4 with `box_resolution = "quarter"`) and a fifth for where to
    read them (edges within +-`box_window` of its peak), soft-argmax. The maps see the 1/8-size
    block too (86 px of a 128-px input): with the 1/4-size map alone (38 px) an edge could not tell
    a glyph's edge from a texture's, and on photographs boxes spread over both (docs/quality.md).
    """
    context = layers.UpSampling2D(interpolation="bilinear")(conv_bn(eighth, 96))
    b = conv_bn(layers.Concatenate()([shared, context]), 96, kernel=1)
    if cfg.box_resolution == "half":
        b = layers.UpSampling2D(interpolation="bilinear")(b)
        b = layers.Concatenate()([b, half])
    b = conv_bn(b, 48, kernel=1)
    b = conv_bn(b, 32)
    maps = layers.Conv2D(5, 3, padding="same")(b)  # four edges and where the object is
    return SoftArgmaxBox(ordered=True, prior=BOX_PRIOR, window=cfg.box_window, name="box", dtype="float32")(maps)


def _label_features(shared, eighth, box, pooling: str):
    """The 1/8-size block, globally average-pooled; with `box` pooling, also the shared map inside
    the predicted box on a 4 x 4 grid, so small objects are not averaged away by clutter."""
    y = layers.GlobalAveragePooling2D()(eighth)
    if pooling == "global":
        return y
    r = conv_bn(BoxAlign(4)([shared, box]), 128)
    return layers.Concatenate()([y, layers.Flatten()(r)])


def _stem(inputs, stem: str):
    """The first block, down to 1/2 size: conv then max pool, or one strided conv (see `ModelConfig.stem`)."""
    if stem == "strided":
        return conv_bn(inputs, 32, strides=2)
    return layers.MaxPooling2D()(conv_bn(inputs, 32))


def default_model(num_classes: int, image_size: int, cfg: ModelConfig) -> keras.Model:
    """BN conv blocks down to 1/4- and 1/8-size maps shared by both heads (see `_box_head`,
    `_label_features`)."""
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    half = conv_bn(_stem(inputs, cfg.stem), 48)
    x = layers.MaxPooling2D()(half)
    x = conv_bn(x, 96)
    shared = conv_bn(x, 96)
    eighth = conv_bn(layers.MaxPooling2D()(shared), 160)
    box = _box_head(shared, half, eighth, cfg)
    y = layers.Dropout(0.2)(_label_features(shared, eighth, box, cfg.label_pooling))
    label = layers.Dense(num_classes, activation="softmax", name="label", dtype="float32")(y)
    return keras.Model(inputs=inputs, outputs={"label": label, "box": box}, name="default")


PRESETS = ("seed", "default", *BACKBONES)


_BUILDING = threading.Lock()


@contextlib.contextmanager
def _own_initializer_seeds(seed: int) -> Iterator[None]:
    """Keras draws the seed of each unseeded initializer (and dropout) from Python's global
    `random` when a layer is created. Any other thread of the process drawing from it meanwhile
    (Prefect's, Dask's client: a test saw it after a Dask run) changed the initial weights of the
    later layers. Here those seeds come from a generator of this build's own, which gives what
    `random.seed(seed)` gave a process with no other thread.

    Keras reads the generator as the module attribute `python_random` of
    `keras.src.random.seed_generator` (not a public API; tests/test_model.py fails if it goes).
    """
    with _BUILDING:
        shared = seed_generator.python_random
        seed_generator.python_random = random.Random(seed)
        try:
            yield
        finally:
            seed_generator.python_random = shared


def build_model(cfg: ModelConfig, num_classes: int, image_size: int) -> keras.Model:
    if cfg.preset not in PRESETS:
        raise ConfigError(f"unknown model preset {cfg.preset!r} (known: {', '.join(PRESETS)})")
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, the dataset has {num_classes}")
    if problem := image_size_problem(cfg.preset, image_size):
        raise ConfigError(problem)
    keras.utils.set_random_seed(cfg.seed)
    with _own_initializer_seeds(cfg.seed):
        return _build(cfg, num_classes, image_size)


def save_initial(cfg: ModelConfig, num_classes: int, image_size: int, path: Path) -> ModelRef:
    """Build `cfg`'s model and save it to `path` (whole or not at all): what a training starts from."""
    model = build_model(cfg, num_classes, image_size)
    atomic.write_with(path, model.save)
    return ModelRef(path=str(path), preset=cfg.preset, params=model.count_params(), fingerprint=hash_file(path))


def _build(cfg: ModelConfig, num_classes: int, image_size: int) -> keras.Model:
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(resolve(cfg.precision))  # layers take the policy when they are created
    try:
        if cfg.preset == "seed":
            return seed_model(num_classes, image_size)
        if cfg.preset == "default":
            return default_model(num_classes, image_size, cfg)
        return pretrained_model(cfg.preset, num_classes, image_size, cfg.weights)
    finally:
        keras.config.set_dtype_policy(previous)


def load(path: Path | str, *, compile: bool = True) -> keras.Model:
    """Load a `.keras` file with safe mode on: no Python lambdas are ever deserialised. A model
    holding a layer of a removed option is refused with one line (`RETIRED_LAYERS`)."""
    for name in _class_names(_archive_config(path)) & RETIRED_LAYERS.keys():
        raise UserError(f"{path} holds the layer {name} ({RETIRED_LAYERS[name]}); this version cannot load it: "
                        "retrain the model")
    model = keras.saving.load_model(str(path), safe_mode=True, compile=compile)
    if compile:
        build_loss_trackers(model)
    return model


def _archive_config(path: Path | str) -> dict[str, Any]:
    """The model's config, read from the `.keras` archive without building the model (a config
    over `MAX_CONFIG_BYTES` unpacked is refused: a model's is kilobytes, a zip bomb's gigabytes)."""
    with zipfile.ZipFile(path) as archive:
        if archive.getinfo("config.json").file_size > MAX_CONFIG_BYTES:
            raise UserError(f"{path}: its config.json unpacks to more than {MAX_CONFIG_BYTES:,} bytes: "
                            "not a model this project saved")
        return json.loads(archive.read("config.json"))


def _class_names(node: Any) -> set[str]:
    """Every `class_name` in a serialised config, nested models included."""
    if isinstance(node, dict):
        found = {node["class_name"]} if isinstance(node.get("class_name"), str) else set()
        return found.union(*(_class_names(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_class_names(value) for value in node))
    return set()


def input_size(path: Path | str) -> int:
    """The side of the square images a `.keras` file's model takes, read from the archive's
    `config.json` without building the model (loading MobileNetV3 takes seconds)."""
    config = _archive_config(path)["config"]
    first = config["input_layers"][0]  # ["image", 0, 0], or a list of those
    name = first if isinstance(first, str) else first[0]
    layer = next(entry for entry in config["layers"] if entry["name"] == name)
    return int(layer["config"]["batch_shape"][1])
