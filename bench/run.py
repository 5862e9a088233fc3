"""`make bench`: figures P0-P5 of issue #6, measured here, written to bench/results/ and docs/benchmarks.md.

P0 distance to the limit   training FLOP/s of preset `seed` / TF matmul peak (same dtype)
P1 throughput ratio        ours (snapshot -> tf.data -> library train) / the plain script (numpy + fit)
P2 input headroom          tf.data pipeline alone / training, images/s
P3 warm re-run             unchanged train_flow re-run / cold run, wall time
P4 scaling                 time per training image and peak RSS at 1k, 4k, 16k images
P5 quality per CPU-minute  `default` preset: validation accuracy and mean IoU against training time
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from multitask.augment import Augmentation  # noqa: E402
from multitask.config import DataConfig, ModelConfig, load_config  # noqa: E402
from multitask.datasets import catalog  # noqa: E402
from multitask.fingerprint import hash_file  # noqa: E402
from multitask.model import build_model  # noqa: E402
from multitask.pipeline import build_snapshot, load_split, make_dataset  # noqa: E402
from multitask.records import ModelRef, SnapshotRef  # noqa: E402
from multitask.train import read_history, train  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from plain_seed import build_plain_model, fit_plain  # noqa: E402


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "date": datetime.date.today().isoformat(),
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}


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


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def shapes_snapshot(workdir: Path, train_size: int) -> tuple:
    """`shapes` with `train_size` training images, as a snapshot; built once per workdir."""
    os.environ["MULTITASK_HOME"] = str(workdir / "ws")
    data = DataConfig(train_size=train_size, validation_size=100, test_size=100)
    record = workdir / f"snapshot-{train_size}.json"
    if record.exists():
        return SnapshotRef.model_validate_json(record.read_text()), data
    snapshot = build_snapshot(catalog.prepare(data), data, workdir / f"snapshot-{train_size}")
    record.write_text(snapshot.model_dump_json())
    return snapshot, data


def plain_images_per_second(snapshot, epochs: int) -> float:
    examples = list(load_split(snapshot, "train").as_numpy_iterator())
    x = np.stack([e["image"] for e in examples]).astype("float32") / 255.0
    labels = keras.utils.to_categorical([e["label"] for e in examples], 10)
    boxes = np.stack([e["box"] for e in examples])
    timer = EpochTimer()
    fit_plain(build_plain_model(), x, labels, boxes, epochs, callbacks=[timer])
    return len(x) / statistics.median(timer.seconds[1:])


def ours_images_per_second(snapshot, epochs: int, workdir: Path, preset: str = "seed",
                           precision: str = "float32", sets: tuple = ()) -> tuple[float, dict]:
    cfg = load_config(preset, sets=[f"train.epochs={epochs}", f'model.precision="{precision}"', *sets])
    model = build_model(cfg.model, 10, 64)
    path = Path(tempfile.mkdtemp(dir=workdir)) / "initial.keras"
    model.save(path)
    ref = ModelRef(path=str(path), preset=preset, params=model.count_params(), fingerprint=hash_file(path))
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    trained = train(ref, snapshot, cfg.train, run_dir)
    history = read_history(trained.history_path)
    seconds = [row["train_seconds"] for row in history]
    return snapshot.splits["train"] / statistics.median(seconds[1:]), {"history": history, "model": trained.model_path}


def p0_p1(workdir: Path, rounds: int, epochs: int) -> dict:
    snapshot, _ = shapes_snapshot(workdir, 3000)
    flops = forward_flops(build_model(ModelConfig(preset="seed"), 10, 64))
    results: dict = {"forward_mflop_per_image": round(flops / 1e6, 2)}
    for precision, dtype in (("float32", "float32"), ("mixed_bfloat16", "bfloat16")):
        ours, plain = [], []
        for _ in range(rounds):  # alternate, so drift in machine speed hits both alike
            ours.append(ours_images_per_second(snapshot, epochs, workdir, precision=precision)[0])
            plain.append(plain_images_per_second(snapshot, epochs))
        peak = matmul_peak(dtype)
        ours_train_gflops = 3 * flops * statistics.median(ours) / 1e9
        plain_train_gflops = 3 * flops * statistics.median(plain) / 1e9
        results[precision] = {
            "ratio": round(statistics.median([o / p for o, p in zip(ours, plain)]), 3),
            "ours_img_s": round(statistics.median(ours), 1), "plain_img_s": round(statistics.median(plain), 1),
            "ours_rounds": [round(v, 1) for v in ours], "plain_rounds": [round(v, 1) for v in plain],
            "matmul_peak_gflops": round(peak, 1),
            "P0_ours": round(ours_train_gflops / peak, 3), "P0_plain": round(plain_train_gflops / matmul_peak("float32"), 3),
        }
    return results


def p2(workdir: Path, train_img_s: float) -> dict:
    snapshot, _ = shapes_snapshot(workdir, 3000)
    batches = make_dataset(snapshot, "train", 32, shuffle_buffer=4096, augmentation=Augmentation(flip=True), seed=0).repeat()
    iterator = iter(batches)
    for _ in range(20):
        next(iterator)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < 5:
        count += int(next(iterator)[0].shape[0])
    pipeline = count / (time.perf_counter() - start)
    return {"pipeline_img_s": round(pipeline, 1), "train_img_s": round(train_img_s, 1),
            "headroom": round(pipeline / train_img_s, 2)}


def p3(workdir: Path) -> dict:
    from prefect import flow

    from flows.train import train_flow

    @flow
    def start_server() -> None:  # the ephemeral API server starts once, before either timing
        return None

    os.environ["MULTITASK_HOME"] = str(workdir / "p3")
    start_server()
    cfg = load_config("default", sets=["train.epochs=2"])
    start = time.perf_counter()
    cold = train_flow(config=cfg)
    cold_s = time.perf_counter() - start
    start = time.perf_counter()
    warm = train_flow(config=cfg)
    warm_s = time.perf_counter() - start
    return {"cold_s": round(cold_s, 2), "warm_s": round(warm_s, 2), "ratio": round(warm_s / cold_s, 4),
            "warm_steps": warm["steps"], "trained_in_warm_run": warm["steps"]["train_model"] != "Cached",
            "cold_steps": cold["steps"]}


def p4_child(size: int, workdir: Path) -> dict:
    snapshot, _ = shapes_snapshot(workdir, size)
    img_s, _ = ours_images_per_second(snapshot, 2, workdir)
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report its parent's
    peak_kb = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                   if line.startswith("VmHWM:"))
    peak_mb = peak_kb / 1024
    return {"images": size, "ms_per_image": round(1000 / img_s, 4), "peak_rss_mb": round(peak_mb, 1)}


def p4(workdir: Path, sizes: list[int]) -> dict:
    rows = []
    for size in sizes:
        shapes_snapshot(workdir, size)  # built here, so the child's peak RSS is training's alone
    for size in sizes:  # one process each: peak RSS is per process
        out = subprocess.run([sys.executable, __file__, "--p4-child", str(size), "--workdir", str(workdir)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    times = [r["ms_per_image"] for r in rows]
    rss = [r["peak_rss_mb"] for r in rows]
    return {"rows": rows, "time_spread": round(max(times) / min(times) - 1, 3),
            "rss_spread": round(max(rss) / min(rss) - 1, 3)}


def p5(workdir: Path, epochs: int) -> dict:
    from multitask.evaluate import evaluate

    snapshot, _ = shapes_snapshot(workdir, 3000)
    _, run = ours_images_per_second(snapshot, epochs, workdir, preset="default")
    cumulative, rows = 0.0, []
    for row in run["history"]:
        cumulative += row["train_seconds"]
        rows.append({"epoch": row["epoch"], "train_minutes": round(cumulative / 60, 2),
                     "val_accuracy": round(row["val_label_accuracy"], 4), "val_mean_iou": round(row["val_box_mean_iou"], 4)})
    cfg = load_config("default")
    report = evaluate(run["model"], snapshot, cfg.evaluate, workdir / "p5-eval")
    return {"rows": rows, "test": {k: report.metrics[k] for k in ("accuracy", "mean_iou", "iou50")}}


def markdown(results: dict) -> str:
    m, p1 = results["machine"], results["P0_P1"]
    f32, bf16 = p1["float32"], p1["mixed_bfloat16"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` (`python bench/run.py`) on {m['cpu']}, {m['cores']} cores, "
        f"TensorFlow {m['tensorflow']}, Keras {m['keras']}, {m['date']}. Raw numbers: `bench/results/`.",
        "Every figure below is written by the script; none is typed by hand.",
        "",
        "| id | figure | value | goal |",
        "|---|---|---|---|",
        f"| P0 | training FLOP/s of `seed` / matmul peak, float32 (ours; plain script {f32['P0_plain']}) | "
        f"{f32['P0_ours']} (peak {f32['matmul_peak_gflops']} GFLOP/s, {p1['forward_mflop_per_image']} MFLOP/image forward) | >= 0.5 |",
        f"| P0 | same, mixed_bfloat16 vs bf16 matmul peak | {bf16['P0_ours']} (peak {bf16['matmul_peak_gflops']} GFLOP/s) | |",
        f"| P1 | ours / plain images/s, float32 | {f32['ratio']} ({f32['ours_img_s']} vs {f32['plain_img_s']}) | >= 1.0 |",
        f"| P1 | ours mixed_bfloat16 / plain float32 | {bf16['ratio']} ({bf16['ours_img_s']} vs {bf16['plain_img_s']}) | >= 2.0 |",
        f"| P2 | tf.data alone / training images/s | {results['P2']['headroom']} ({results['P2']['pipeline_img_s']} vs "
        f"{results['P2']['train_img_s']}) | >= 5 |",
        f"| P3 | warm re-run / cold run of `train_flow` | {results['P3']['ratio']} ({results['P3']['warm_s']} s vs "
        f"{results['P3']['cold_s']} s; trained in warm run: {results['P3']['trained_in_warm_run']}) | <= 0.10, no training |",
        f"| P4 | spread of ms/image over 1k-16k images | {results['P4']['time_spread']:+.1%} | within 15% |",
        f"| P4 | spread of peak RSS over 1k-16k images | {results['P4']['rss_spread']:+.1%} | flat |",
        "",
        "P1 rounds (images/s), alternating ours and plain: "
        f"float32 ours {f32['ours_rounds']}, plain {f32['plain_rounds']}; "
        f"bf16 ours {bf16['ours_rounds']}, plain {bf16['plain_rounds']}.",
        "",
        "## P4 scaling (preset `seed`, epoch 2 of 2; peak RSS of a process that only trains)",
        "",
        "| training images | ms / image | peak RSS (MB) |",
        "|---|---|---|",
        *(f"| {r['images']} | {r['ms_per_image']} | {r['peak_rss_mb']} |" for r in results["P4"]["rows"]),
        "",
        "## P5 quality per CPU-minute (preset `default`, `shapes` 3000 training images)",
        "",
        "| epoch | training minutes | val accuracy | val mean IoU |",
        "|---|---|---|---|",
        *(f"| {r['epoch']} | {r['train_minutes']} | {r['val_accuracy']} | {r['val_mean_iou']} |" for r in results["P5"]["rows"]),
        "",
        f"Test split (100 images) after the last epoch: accuracy {results['P5']['test']['accuracy']}, mean IoU "
        f"{results['P5']['test']['mean_iou']}, IoU>=0.5 {results['P5']['test']['iou50']}.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="multitask benchmarks P0-P5")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per P1 measurement (first one is warm-up)")
    parser.add_argument("--p5-epochs", type=int, default=12)
    parser.add_argument("--p4-sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--p4-child", type=int)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--smoke", action="store_true", help="print the results, write nothing")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="multitask-bench-"))
    if args.p4_child:
        print(json.dumps(p4_child(args.p4_child, workdir)))
        return
    started = time.perf_counter()
    results: dict = {"machine": machine()}
    results["P0_P1"] = p0_p1(workdir, args.rounds, args.epochs)
    results["P2"] = p2(workdir, results["P0_P1"]["float32"]["ours_img_s"])
    results["P3"] = p3(workdir)
    results["P4"] = p4(workdir, args.p4_sizes)
    results["P5"] = p5(workdir, args.p5_epochs)
    results["seconds"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{platform.node()}-{results['machine']['date']}.json"
    if args.smoke:  # a quick check that the script runs; nothing is published
        print(json.dumps(results, indent=2))
        return
    out.write_text(json.dumps(results, indent=2) + "\n")
    DOC.write_text(markdown(results))
    print(f"wrote {out} and {DOC} in {results['seconds']} s")


if __name__ == "__main__":
    main()
