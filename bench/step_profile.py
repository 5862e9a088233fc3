"""Where a training step's time goes (P0), by parts timed alone, for the `seed` or the `default` preset.

Each part runs inside one `tf.function` loop (a graph loop, so Python is not in the timing), in float32 on
random data of the right shapes: each layer's forward and backward pass (gradients for its inputs and weights),
and then:
- `seed`: the starting point's model (bench/plain_seed.py) at 64 px; Adam's update of all weights; the whole
  step with its two losses; Keras `fit` one batch per call and 16 per call (the project's setting), so Keras'
  and Python's share shows as the difference.
- `default`: the library's compiled model (`multitask.compiling.compile_model`: the losses, their weighting and
  the where and edge losses) at `--size`; the losses alone (forward and backward from the model's outputs);
  the optimizer's update; the library's whole train step (`Model.train_step`, metrics included); `fit` as the
  library calls it; and the input pipeline alone (snapshot -> shuffled, augmented batches) at that size.

    python bench/step_profile.py [--preset seed|default] [--size 128] [--batch 32 256]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # read by TensorFlow when first imported, below

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from input_pipeline import pipeline_images_per_second  # noqa: E402
from training import snapshot_of  # noqa: E402

from multitask.compiling import compile_model  # noqa: E402
from multitask.config import DataConfig  # noqa: E402
from multitask.config_loader import load_config  # noqa: E402
from multitask.model import build_model  # noqa: E402

from plain_seed import build_plain_model  # noqa: E402

LOOP_SECONDS = 1.0  # each part loops for about this long, at least twice
CLASSES = 10


def _ms_per_step(step, *args) -> float:
    """Milliseconds per call of `step(*args)`, looped inside one graph; the best of two loops."""
    @tf.function
    def loop(steps, *args):
        total = tf.constant(0.0)
        for _ in tf.range(steps):  # the sum makes each step's outputs needed, so none is pruned
            total += tf.add_n([tf.reduce_sum(tf.cast(t, tf.float32)) for t in tf.nest.flatten(step(*args))])
        return total

    start = time.perf_counter()
    loop(tf.constant(1), *args).numpy()  # trace and warm up
    first = time.perf_counter() - start
    loop(tf.constant(1), *args).numpy()
    once = max(time.perf_counter() - start - first, 1e-4)
    steps = max(2, math.ceil(LOOP_SECONDS / once))
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        loop(tf.constant(steps), *args).numpy()
        best = min(best, (time.perf_counter() - start) / steps)
    return 1000 * best


def _random_like(tensor, batch: int):
    return tf.random.uniform((batch, *tensor.shape[1:]), dtype=tensor.dtype)


def _layer_step(layer: keras.Layer):
    def step(*inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = layer(inputs[0] if len(inputs) == 1 else list(inputs))
            total = tf.add_n([tf.reduce_sum(tf.cast(t, tf.float32)) for t in tf.nest.flatten(outputs)])
        return tape.gradient(total, [*inputs, *layer.trainable_weights], unconnected_gradients="zero")
    return step


def _shape(tensors) -> str:
    return "+".join(str(tuple(t.shape[1:])) for t in tf.nest.flatten(tensors))


def layer_parts(model: keras.Model, batch: int, kinds: tuple[type, ...] | None = None) -> dict[str, float]:
    """Forward + backward of each layer (of `kinds`, or every one but the input), on inputs of its shapes."""
    parts = {}
    for index, layer in enumerate(model.layers):  # by index: Keras numbers the names of a second model on
        if isinstance(layer, keras.layers.InputLayer) or (kinds and not isinstance(layer, kinds)):
            continue
        inputs = layer.input if isinstance(layer.input, list) else [layer.input]
        name = f"{index:02d} {type(layer).__name__} {_shape(inputs)}->{_shape(layer.output)}"
        parts[name] = _ms_per_step(_layer_step(layer), *[_random_like(t, batch) for t in inputs])
    return parts


def _fit_ms(model: keras.Model, data: tf.data.Dataset, steps: int) -> float:
    model.fit(data, epochs=1, verbose=0)  # trace
    start = time.perf_counter()
    model.fit(data, epochs=2, verbose=0)
    return 1000 * (time.perf_counter() - start) / (2 * steps)


def seed_profile(batch: int) -> dict[str, float]:
    """The starting point's model: its layers, Adam, the whole step, and `fit` at 1 and 16 steps per call."""
    model = build_plain_model()
    x = tf.random.uniform((batch, 64, 64, 3))
    labels = tf.one_hot(tf.random.uniform((batch,), 0, CLASSES, dtype=tf.int32), CLASSES)
    boxes = tf.random.uniform((batch, 4))
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    grads = [tf.random.normal(v.shape) * 1e-3 for v in model.trainable_variables]

    def forward_backward(x, labels, boxes):
        with tf.GradientTape() as tape:
            scores, box = model(x, training=True)
            loss = tf.reduce_mean(keras.losses.categorical_crossentropy(labels, scores)) + \
                tf.reduce_mean(keras.losses.binary_crossentropy(boxes, box))
        return tape.gradient(loss, model.trainable_variables)

    def train_step(x, labels, boxes):
        optimizer.apply_gradients(zip(forward_backward(x, labels, boxes), model.trainable_variables))
        return optimizer.iterations

    def adam(*grads):
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return optimizer.iterations

    parts = layer_parts(model, batch, (keras.layers.Conv2D, keras.layers.Dense, keras.layers.MaxPooling2D))
    parts |= {"forward": _ms_per_step(lambda x: model(x, training=True), x),
              "forward + backward": _ms_per_step(forward_backward, x, labels, boxes),
              "Adam update": _ms_per_step(adam, *grads),
              "whole step in one graph loop": _ms_per_step(train_step, x, labels, boxes)}
    n = batch * 32
    images = np.random.rand(n, 64, 64, 3).astype("float32")
    targets = (keras.utils.to_categorical(np.random.randint(0, CLASSES, n), CLASSES),
               np.random.rand(n, 4).astype("float32"))
    data = tf.data.Dataset.from_tensor_slices((images, targets)).batch(batch).cache()
    for spe in (1, 16):
        plain = build_plain_model()
        plain.compile(optimizer="adam", loss=["categorical_crossentropy", "binary_crossentropy"],
                      steps_per_execution=spe)
        parts[f"fit, steps_per_execution={spe}"] = _fit_ms(plain, data, 32)
    return parts


def _library_batch(batch: int, size: int) -> tuple[tf.Tensor, dict]:
    centres = tf.random.uniform((batch, 2), 0.3, 0.7)
    boxes = tf.concat([centres - 0.15, centres + 0.15], axis=-1)
    return tf.random.uniform((batch, size, size, 3)), {
        "label": tf.random.uniform((batch,), 0, CLASSES, dtype=tf.int32), "box": boxes}


def default_profile(batch: int, size: int) -> dict[str, float]:
    """The library's `default` model as it trains: its layers, losses, optimizer, whole step, `fit`, input."""
    cfg = load_config("default", sets=[f"train.batch_size={batch}"])
    model = compile_model(build_model(cfg.model, CLASSES, size), cfg.train, steps_per_epoch=32)
    x, y = _library_batch(batch, size)
    y_pred = {name: tf.random.uniform((batch, *out.shape[1:])) for name, out in zip(model.output_names, model.outputs)}
    y_targets = {**y, **({"where": y["box"]} if "where" in y_pred else {})}

    def losses(*outputs):
        outputs = dict(zip(y_pred, outputs))
        with tf.GradientTape() as tape:
            tape.watch(outputs)
            total = model.compute_loss(x=x, y=y_targets, y_pred=outputs)
        return tape.gradient(total, list(outputs.values()))

    grads = [tf.random.normal(v.shape) * 1e-3 for v in model.trainable_variables]

    def update(*grads):
        model.optimizer.apply(list(grads), model.trainable_variables)
        return model.optimizer.iterations

    parts = layer_parts(model, batch)
    parts |= {"losses (where and edge included)": _ms_per_step(losses, *y_pred.values()),
              "optimizer update": _ms_per_step(update, *grads),
              "forward": _ms_per_step(lambda x: model(x, training=True), x),
              "whole step in one graph loop": _ms_per_step(lambda x, y: model.train_step((x, y)), x, y)}
    steps = max(4, 1024 // batch)
    data = tf.data.Dataset.from_tensors((x, y)).repeat(steps)
    parts["fit, steps_per_execution=16 (the library's)"] = _fit_ms(model, data, steps)
    parts["input pipeline alone (augmented)"] = pipeline_ms(batch, size)
    return parts


def pipeline_ms(batch: int, size: int) -> float:
    """ms per batch of the training pipeline (bench/input_pipeline.py) on `shapes` resized to `size`."""
    with tempfile.TemporaryDirectory(prefix="step-profile-") as folder:
        data = DataConfig(train_size=batch * 20, validation_size=32, test_size=32, image_size=size)
        snapshot = snapshot_of(Path(folder), f"shapes-{size}", data)
        return 1000 * batch / pipeline_images_per_second(snapshot, batch, seconds=2.0)


def profile(preset: str, batch: int, size: int) -> dict:
    parts = seed_profile(batch) if preset == "seed" else default_profile(batch, size)
    result = {"preset": preset, "batch": batch, "size": 64 if preset == "seed" else size, "parts_ms": parts}
    return json.loads(json.dumps(result), parse_float=lambda v: round(float(v), 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=["seed", "default"], default="seed")
    parser.add_argument("--size", type=int, default=128, help="input side of the `default` preset")
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 256])
    args = parser.parse_args()
    print(json.dumps([profile(args.preset, batch, args.size) for batch in args.batch]))


if __name__ == "__main__":
    main()
