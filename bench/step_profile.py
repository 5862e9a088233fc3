"""Where a training step of the `seed` model spends its time (P0), by parts timed alone.

Each part runs `STEPS` times inside one `tf.function` (a graph loop, so Python is not in the
timing), in float32 on random data of the right shapes: each layer's forward and backward pass
(gradients for its input and weights), Adam's update of all weights, and the whole step. Beside
them, the same whole step driven by Keras `fit` one batch per call (`steps_per_execution=1`) and
16 per call (the project's setting), so Keras' and Python's share shows as the difference.

    python bench/step_profile.py [--batch 32 256]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # read by TensorFlow when first imported, below

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from plain_seed import build_plain_model  # noqa: E402

STEPS = 20


def _ms_per_step(step, *args) -> float:
    """Milliseconds per call of `step(*args)`, looped `STEPS` times inside one graph."""
    @tf.function
    def loop(*args):
        total = tf.constant(0.0)
        for _ in tf.range(STEPS):  # the sum makes each step's outputs needed, so none is pruned
            total += tf.add_n([tf.reduce_sum(tf.cast(t, tf.float32)) for t in tf.nest.flatten(step(*args))])
        return total

    loop(*args)  # trace and warm up
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        loop(*args).numpy()
        best = min(best, (time.perf_counter() - start) / STEPS)
    return 1000 * best


def _layer_step(layer: keras.Layer):
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(layer(x))
        return tape.gradient(total, [x, *layer.trainable_weights])
    return step


def layer_parts(model: keras.Model, batch: int) -> dict[str, float]:
    """Forward + backward of each layer with weights, and of the pooling, on inputs of its shape."""
    parts = {}
    for layer in model.layers:
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense, keras.layers.MaxPooling2D)):
            continue
        x = tf.random.uniform((batch, *layer.input.shape[1:]))
        parts[f"{type(layer).__name__} {tuple(layer.input.shape[1:])}->{tuple(layer.output.shape[1:])}"] = \
            _ms_per_step(_layer_step(layer), x)
    return parts


def whole_step(model: keras.Model, batch: int) -> dict[str, float]:
    x = tf.random.uniform((batch, 64, 64, 3))
    labels = tf.one_hot(tf.random.uniform((batch,), 0, 10, dtype=tf.int32), 10)
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

    return {"forward": _ms_per_step(lambda x: model(x, training=True), x),
            "forward + backward": _ms_per_step(forward_backward, x, labels, boxes),
            "Adam update": _ms_per_step(adam, *grads),
            "whole step in one graph loop": _ms_per_step(train_step, x, labels, boxes)}


def fit_ms_per_step(batch: int, steps_per_execution: int) -> float:
    """The whole step as Keras `fit` runs it, from an in-memory dataset."""
    model = build_plain_model()
    model.compile(optimizer="adam", loss=["categorical_crossentropy", "binary_crossentropy"],
                  steps_per_execution=steps_per_execution)
    n = batch * 32
    x = np.random.rand(n, 64, 64, 3).astype("float32")
    y = (keras.utils.to_categorical(np.random.randint(0, 10, n), 10), np.random.rand(n, 4).astype("float32"))
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache()
    model.fit(data, epochs=1, verbose=0)  # trace
    start = time.perf_counter()
    model.fit(data, epochs=2, verbose=0)
    return 1000 * (time.perf_counter() - start) / 64


def profile(batch: int) -> dict:
    model = build_plain_model()
    result = {"batch": batch, "layers_ms": layer_parts(model, batch), **{f"{k}_ms": v for k, v in
                                                                          whole_step(model, batch).items()}}
    for spe in (1, 16):
        result[f"fit, steps_per_execution={spe}_ms"] = fit_ms_per_step(batch, spe)
    return json.loads(json.dumps(result), parse_float=lambda v: round(float(v), 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 256])
    args = parser.parse_args()
    print(json.dumps([profile(batch) for batch in args.batch]))


if __name__ == "__main__":
    main()
