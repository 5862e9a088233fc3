"""P0 and P1, measured in the same rounds on `shapes` (3000 training images), in float32 and in mixed_bfloat16.

P0 distance to the limit: the `seed` preset's training FLOP/s / TensorFlow's matmul peak in the same dtype, at
the throughput mode's batch (`THROUGHPUT_BATCH`) and at the preset's 32, with bench/step_profile.py's account
of where a step's time goes; the same for the `default` preset at the photo set's input side (`p0_default`).
P1 throughput ratio: our training (snapshot -> tf.data -> library train) / the plain script (numpy + fit),
images/s. Each round runs ours, the plain script, the throughput mode and the
matmul peak in turn, so drift in the machine's speed hits all of them alike.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import keras
import tensorflow as tf
from commands import last_json
from training import ours_images_per_second, plain_images_per_second, shapes_snapshot

from multitask.config import ModelConfig
from multitask.model import build_model
from multitask.records import SnapshotRef

THROUGHPUT_BATCH = 256  # the throughput mode of P0: `--set train.batch_size=256`; the `seed` preset keeps 32
PRECISIONS = {"float32": "float32", "mixed_bfloat16": "bfloat16"}  # training precision -> matmul dtype
DEFAULT_SIZE = 128  # the input side `multitask.sizing` gives the `default` preset on the photo set
FIT_PART = "fit, steps_per_execution=16 (the library's)"  # bench/step_profile.py's whole step as training runs it
STEP_PROFILE = Path(__file__).resolve().with_name("step_profile.py")


def matmul_peak(dtype: str, seconds: float = 3.0) -> float:
    """GFLOP/s of a 2048x2048 matmul loop in `dtype`."""
    a = tf.random.normal((2048, 2048), dtype=tf.float32)
    a = tf.cast(a, dtype)

    @tf.function
    def step(x):
        return tf.matmul(x, x)

    step(a).numpy()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step(a).numpy()
        count += 1
    return 2 * 2048**3 * count / (time.perf_counter() - start) / 1e9


def forward_flops(model: keras.Model) -> int:
    """FLOPs of one forward pass per image: 2 x multiply-adds of convolutions and dense layers."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, out = layer.output.shape
            kh, kw = layer.kernel_size
            total += 2 * h * w * out * kh * kw * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return total


def precision_rounds(snapshot: SnapshotRef, workdir: Path, precision: str, rounds: int, epochs: int,
                     flops: int, plain_peak: float | None) -> dict:
    """One precision's rounds and its P0 and P1 figures. `plain_peak`: the float32 peak the plain script's
    share is taken against (None: this precision's own, as for float32 itself)."""
    ours, plain, throughput, peak = [], [], [], []
    for _ in range(rounds):
        ours.append(ours_images_per_second(snapshot, epochs, workdir, precision=precision))
        plain.append(plain_images_per_second(snapshot, epochs))
        throughput.append(ours_images_per_second(snapshot, epochs, workdir, precision=precision,
                                                 sets=(f"train.batch_size={THROUGHPUT_BATCH}",)))
        peak.append(matmul_peak(PRECISIONS[precision]))  # right after the training it is compared with
    default = ours_images_per_second(snapshot, epochs, workdir, preset="default", precision=precision)
    median_peak = statistics.median(peak)

    def share(images_per_second: float, peak: float = median_peak) -> float:
        return round(3 * flops * images_per_second / 1e9 / peak, 3)

    return {
        "ratio": round(statistics.median([o / p for o, p in zip(ours, plain)]), 3),
        "ours_img_s": round(statistics.median(ours), 1), "plain_img_s": round(statistics.median(plain), 1),
        "ours_rounds": [round(v, 1) for v in ours], "plain_rounds": [round(v, 1) for v in plain],
        "throughput_img_s": round(statistics.median(throughput), 1),
        "throughput_rounds": [round(v, 1) for v in throughput], "default_preset_img_s": round(default, 1),
        "matmul_peak_gflops": round(median_peak, 1), "peak_rounds": [round(v, 1) for v in peak],
        # each round's throughput over the peak measured right after it, then the median
        "P0_throughput": statistics.median([share(t, p) for t, p in zip(throughput, peak)]),
        "P0_ours": share(statistics.median(ours)),
        "P0_plain": share(statistics.median(plain), median_peak if plain_peak is None else plain_peak),
    }


def step_profile() -> list[dict]:
    """bench/step_profile.py at the preset's batch and the throughput mode's, in a process of its own."""
    return last_json([sys.executable, str(STEP_PROFILE), "--batch", "32", str(THROUGHPUT_BATCH)])


def p0_default() -> dict:
    """P0 of the `default` preset at the input side it takes on the photo set: training FLOP/s of the library's
    `fit` (bench/step_profile.py, which also says where the step's time goes) / the float32 matmul peak measured
    right after, at batch 32 and the throughput batch. The figure is batch 32's, the batch the preset trains at:
    at 128 px a batch of 256 was slower per image (its activations do not fit any cache)."""
    profiles = last_json([sys.executable, str(STEP_PROFILE), "--preset", "default", "--size", str(DEFAULT_SIZE),
                          "--batch", "32", str(THROUGHPUT_BATCH)])
    peak = matmul_peak("float32")
    flops = forward_flops(build_model(ModelConfig(preset="default"), 10, DEFAULT_SIZE))
    shares = {}
    for profile in profiles:
        images_per_second = profile["batch"] / profile["parts_ms"][FIT_PART] * 1000
        shares[str(profile["batch"])] = {"img_s": round(images_per_second, 1),
                                    "share": round(3 * flops * images_per_second / 1e9 / peak, 3)}
    return {"ratio": shares["32"]["share"], "goal": ">= 0.35", "batch": 32, "size": DEFAULT_SIZE,
            "forward_mflop_per_image": round(flops / 1e6, 1), "matmul_peak_gflops": round(peak, 1),
            "batches": shares, "step_profile": profiles}


def p0_p1(workdir: Path, rounds: int, epochs: int) -> tuple[dict, dict]:
    """The P0 and P1 figures; P0 holds every round of both precisions."""
    snapshot = shapes_snapshot(workdir, 3000)
    flops = forward_flops(build_model(ModelConfig(preset="seed"), 10, 64))
    raw: dict = {"forward_mflop_per_image": round(flops / 1e6, 2)}
    raw["float32"] = precision_rounds(snapshot, workdir, "float32", rounds, epochs, flops, None)
    raw["mixed_bfloat16"] = precision_rounds(snapshot, workdir, "mixed_bfloat16", rounds, epochs, flops,
                                             raw["float32"]["matmul_peak_gflops"])
    f32, bf16 = raw["float32"], raw["mixed_bfloat16"]
    p0 = {"ratio": f32["P0_throughput"], "goal": ">= 0.5", "batch": THROUGHPUT_BATCH, **raw,
          "step_profile": step_profile()}
    p1 = {"ratio": f32["ratio"], "goal": ">= 1.0", "bf16_ratio": bf16["ratio"], "bf16_goal": ">= 2.0"}
    return p0, p1
