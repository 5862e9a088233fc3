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

import keras
import tensorflow as tf
from keras import layers

from multitask import atomic
from multitask.backbones import BACKBONES, pretrained_model
from multitask.config import ModelConfig, TrainConfig, image_size_problem
from multitask.errors import ConfigError
from multitask.fingerprint import hash_file
from multitask.heads import BOX_PRIOR, BoxAlign, SoftArgmaxBox, WherePool, conv_bn
from multitask.losses import box_loss
from multitask.metrics import BoxIoUAbove, MeanBoxIoU
from multitask.optimizer import FusedAdam
from multitask.precision import resolve
from multitask.records import ModelRef
from multitask.weighting import WHERE, WeightedMultiTask, with_weighting, without_where


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


def _box_head(shared, half, eighth, window: float):
    """Four score maps at 1/2 size and a fifth for where to read them (edges within +-`window`
    of its peak), soft-argmax. The maps see the 1/8-size block too (86 px of a 128-px input):
    with the 1/4-size map alone (38 px) an edge could not tell a glyph's edge from a texture's,
    and on photographs boxes spread over both (docs/quality.md). Returns the box and the maps."""
    context = layers.UpSampling2D(interpolation="bilinear")(conv_bn(eighth, 96))
    b = conv_bn(layers.Concatenate()([shared, context]), 96, kernel=1)
    b = layers.UpSampling2D(interpolation="bilinear")(b)
    b = layers.Concatenate()([b, half])
    b = conv_bn(b, 48, kernel=1)
    b = conv_bn(b, 32)
    maps = layers.Conv2D(5, 3, padding="same")(b)  # four edges and where the object is
    return SoftArgmaxBox(ordered=True, prior=BOX_PRIOR, window=window, name="box", dtype="float32")(maps), maps


def _label_features(inputs, shared, eighth, box, maps, pooling: str):
    """The 1/8-size block, globally average-pooled (with `where` pooling, averaged with the box
    head's where map as weights instead, see `WherePool`); with `box` and `where` pooling, also
    the shared map inside the predicted box on a 4 x 4 grid, so small objects are not averaged
    away by clutter; with `crop` pooling, also a small CNN on the image inside the box, resampled
    to 32 x 32, so the object is seen at one scale wherever and however large it is."""
    y = WherePool()([eighth, maps]) if pooling == "where" else layers.GlobalAveragePooling2D()(eighth)
    if pooling == "global":
        return y
    if pooling in ("box", "where"):
        r = BoxAlign(4)([shared, box])
        r = conv_bn(r, 128)
        return layers.Concatenate()([y, layers.Flatten()(r)])
    c = BoxAlign(32, margin=0.15)([inputs, box])
    c = layers.MaxPooling2D()(conv_bn(conv_bn(c, 32), 32))
    c = layers.MaxPooling2D()(conv_bn(conv_bn(c, 64), 64))
    c = layers.GlobalAveragePooling2D()(conv_bn(c, 128))
    return layers.Concatenate()([y, c])


def _with_sixteenth(eighth):
    """The 1/8-size block joined by a 1/16-size one upsampled back to it: its cells see a window
    about 118 px wide (at the centre of a 128-px input, all of it) where the 1/8-size block sees
    46. Measured on photo seed 0: no gain (docs/quality.md, stop 36). The 1/16 map is rounded
    up and cropped back, so any multiple of 8 still fits."""
    x = layers.MaxPooling2D(padding="same")(eighth)
    x = layers.UpSampling2D(interpolation="bilinear")(conv_bn(conv_bn(x, 192), 192))
    odd = x.shape[1] - eighth.shape[1]
    if odd:
        x = layers.Cropping2D(((0, odd), (0, odd)))(x)
    return conv_bn(layers.Concatenate()([eighth, x]), 160, kernel=1)


def default_model(num_classes: int, image_size: int, label_pooling: str, box_window: float,
                  sixteenth: bool) -> keras.Model:
    """BN conv blocks down to 1/4- and 1/8-size maps shared by both heads (see `_box_head`,
    `_label_features`); the 1/8-size map optionally joined by a 1/16-size block (`_with_sixteenth`)."""
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = conv_bn(inputs, 32)
    x = layers.MaxPooling2D()(x)
    half = conv_bn(x, 48)
    x = layers.MaxPooling2D()(half)
    x = conv_bn(x, 96)
    shared = conv_bn(x, 96)
    eighth = conv_bn(layers.MaxPooling2D()(shared), 160)
    if sixteenth:
        eighth = _with_sixteenth(eighth)
    box, maps = _box_head(shared, half, eighth, box_window)
    y = layers.Dropout(0.2)(_label_features(inputs, shared, eighth, box, maps, label_pooling))
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
    from keras.src.random import seed_generator

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
            return default_model(num_classes, image_size, cfg.label_pooling, cfg.box_window, cfg.sixteenth_block)
        return pretrained_model(cfg.preset, num_classes, image_size, cfg.weights)
    finally:
        keras.config.set_dtype_policy(previous)


def learning_rate(cfg: TrainConfig, steps_per_epoch: int):
    if cfg.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps=cfg.epochs * steps_per_epoch)
    return cfg.learning_rate


def optimizer(cfg: TrainConfig, steps_per_epoch: int) -> FusedAdam:
    """Adam, with `cfg.weight_decay` on every weight but the learned task weights (`uncertainty`):
    decay would pull their log-variances to 0, i.e. towards equal weights; with `cfg.ema_momentum`,
    keeping the weights' moving average (`train.AveragedWeights` swaps it in to validate)."""
    adam = FusedAdam(learning_rate=learning_rate(cfg, steps_per_epoch), weight_decay=cfg.weight_decay or None,
                     use_ema=cfg.ema_momentum > 0, ema_momentum=cfg.ema_momentum)
    if cfg.weight_decay:
        adam.exclude_from_weight_decay(var_names=["log_variances"])
    return adam


def compile_model(model: keras.Model, cfg: TrainConfig, steps_per_epoch: int) -> keras.Model:
    """The model ready to train with `cfg`'s losses, weighting and metrics.

    Fixed weighting compiles the model itself with Keras' loss weights (sparse categorical
    cross-entropy is the seed's categorical one on integer labels). Learned weightings, and a
    model trained with `cfg.where_loss_weight` or `cfg.edge_loss_weight` on its box head's score
    maps (`where_map`), return the same layers in a `WeightedMultiTask`, which computes and
    weights the losses itself; the latter with a `where` output, which `for_inference` takes off.
    """
    losses, loss_weights = None, None
    where = where_map(model) if cfg.where_loss_weight or cfg.edge_loss_weight else None
    if cfg.weighting == "fixed" and where is None:
        losses = {"label": keras.losses.SparseCategoricalCrossentropy(name="label_loss"),
                  "box": box_loss(cfg.box_loss, cfg.huber_delta)}
        loss_weights = {"label": cfg.label_loss_weight, "box": cfg.box_loss_weight}
    else:
        model = with_weighting(model, cfg, where)
    model.compile(
        optimizer=optimizer(cfg, steps_per_epoch),
        loss=losses,
        loss_weights=loss_weights,
        # Metric objects, not names: Keras builds a metric named by a string inside the first traced
        # train step, and a variable created there makes TensorFlow trace the whole step twice.
        metrics={"label": [keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                           keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5")],
                 "box": [MeanBoxIoU(), BoxIoUAbove(0.5), BoxIoUAbove(0.75, name="iou75")]},
        steps_per_execution=_steps_per_execution(cfg),
    )
    _build_loss_trackers(model)
    # Without a distribution strategy Keras creates the optimizer's slot variables inside the first
    # traced train step, at about 28 ms each (8 s for MobileNetV3-Small's 308): here, 0.5 s in all.
    model.optimizer.build(model.trainable_variables)
    return model


def _build_loss_trackers(model: keras.Model) -> None:
    """Keras creates its per-head loss trackers the first time it computes the loss, inside the
    first traced train or test step, where a new variable makes TensorFlow trace the whole step
    twice. One loss computed here, on zeros, creates them before that. (A `WeightedMultiTask`
    has no Keras losses: it creates its trackers itself; a model without our two heads is left
    to Keras.)"""
    if model.loss is None or sorted(getattr(model, "output_names", ())) != ["box", "label"]:
        return
    y_pred = {name: keras.ops.zeros((1, *output.shape[1:])) for name, output in zip(model.output_names, model.outputs)}
    model.compute_loss(y={"label": keras.ops.zeros((1,), "int32"), "box": keras.ops.zeros((1, 4))}, y_pred=y_pred)
    model.reset_metrics()


def where_map(model: keras.Model):
    """The score maps of a box head with a where map (the fifth, see `_box_head`), or None."""
    head = next((layer for layer in model.layers if isinstance(layer, SoftArgmaxBox)), None)
    return head.input if head is not None and head.input.shape[-1] == 5 else None


def for_inference(model: keras.Model, cfg: TrainConfig) -> keras.Model:
    """A model trained with a `where` output, without it: compiled as `cfg` compiles a model
    that has none, with the weighting's state (DWA's lambdas, uncertainty's variances) kept."""
    if WHERE not in model.output_names:
        return model
    unsupervised = cfg.model_copy(update={"where_loss_weight": 0.0, "edge_loss_weight": 0.0})
    served = compile_model(without_where(model), unsupervised, steps_per_epoch=1)
    if isinstance(served, WeightedMultiTask) and isinstance(model, WeightedMultiTask):
        for name in ("log_variances", "dwa_lambdas", "dwa_history"):
            getattr(served, name).assign(getattr(model, name))
    return served


def _steps_per_execution(cfg: TrainConfig) -> int:
    """One step per call with several replicas: Keras 3.15's multi-step loop under MirroredStrategy
    fails ("You must feed a value for placeholder tensor ...") with two replicas (checked on two
    logical CPU devices; tests/test_train.py)."""
    return 1 if tf.distribute.get_strategy().num_replicas_in_sync > 1 else cfg.steps_per_execution


def load(path: Path | str, *, compile: bool = True) -> keras.Model:
    """Load a `.keras` file with safe mode on: no Python lambdas are ever deserialised."""
    model = keras.saving.load_model(str(path), safe_mode=True, compile=compile)
    if compile:
        _build_loss_trackers(model)
    return model


def input_size(path: Path | str) -> int:
    """The side of the square images a `.keras` file's model takes, read from the archive's
    `config.json` without building the model (loading MobileNetV3 takes seconds)."""
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))["config"]
    first = config["input_layers"][0]  # ["image", 0, 0], or a list of those
    name = first if isinstance(first, str) else first[0]
    layer = next(entry for entry in config["layers"] if entry["name"] == name)
    return int(layer["config"]["batch_shape"][1])
