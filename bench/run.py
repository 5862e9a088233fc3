"""`make bench`: figures P0-P8 (issues 6 and 17), measured here, written to bench/results/ and docs/benchmarks.md.

P0 distance to the limit   training FLOP/s of preset `seed` / TF matmul peak (same dtype)
P1 throughput ratio        ours (snapshot -> tf.data -> library train) / the plain script (numpy + fit)
P2 input headroom          tf.data pipeline alone / training, images/s
P3 warm re-run             unchanged train_flow re-run / cold run, wall time
P3b cached from the shell  fully cached `multitask train` / a one-task Prefect flow, wall time
P4 scaling                 time per training image and peak RSS at 1k, 4k, 16k images
P5 quality per CPU-minute  the default recipe's validation curve against training time (P7's run)
P6 bfloat16 accuracy       mixed_bfloat16 - float32 test points (bench/precision.py)
P7 fixed overhead          cold `multitask train` of the default recipe / its training time
P8 serving                 MLflow scoring server / in-process prediction latency (bench/serving.py)
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
BEGIN, END = "<!-- bench:start -->", "<!-- bench:end -->"  # the block of docs/benchmarks.md written here
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from multitask.augment import Augmentation  # noqa: E402
from multitask.config import DataConfig, ModelConfig, load_config  # noqa: E402
from multitask.model import build_model  # noqa: E402
from multitask.pipeline import load_split, make_dataset  # noqa: E402
from multitask.train import read_history  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from precision import p6, p6_summary  # noqa: E402
from training import snapshot_of, train_once  # noqa: E402

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
    data = DataConfig(train_size=train_size, validation_size=100, test_size=100)
    return snapshot_of(workdir, f"snapshot-{train_size}", data), data


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
    trained = train_once(snapshot, cfg, workdir)
    history = read_history(trained.history_path)
    seconds = [row["train_seconds"] for row in history]
    return snapshot.splits["train"] / statistics.median(seconds[1:]), {"history": history, "model": trained.model_path}


THROUGHPUT_BATCH = 256  # the throughput mode of P0: `--set train.batch_size=256`; the `seed` preset keeps 32


def p0_p1(workdir: Path, rounds: int, epochs: int) -> dict:
    snapshot, _ = shapes_snapshot(workdir, 3000)
    flops = forward_flops(build_model(ModelConfig(preset="seed"), 10, 64))
    results: dict = {"forward_mflop_per_image": round(flops / 1e6, 2)}
    for precision, dtype in (("float32", "float32"), ("mixed_bfloat16", "bfloat16")):
        ours, plain, throughput, peak = [], [], [], []
        for _ in range(rounds):  # alternate, so drift in machine speed hits all alike
            ours.append(ours_images_per_second(snapshot, epochs, workdir, precision=precision)[0])
            plain.append(plain_images_per_second(snapshot, epochs))
            throughput.append(ours_images_per_second(snapshot, epochs, workdir, precision=precision,
                                                     sets=(f"train.batch_size={THROUGHPUT_BATCH}",))[0])
            peak.append(matmul_peak(dtype))  # right after the training it is compared with
        default = ours_images_per_second(snapshot, epochs, workdir, preset="default", precision=precision)[0]
        median_peak = statistics.median(peak)
        float32_peak = results.get("float32", {}).get("matmul_peak_gflops", median_peak)  # the plain script's

        def share(images_per_second: float, peak: float = median_peak) -> float:
            return round(3 * flops * images_per_second / 1e9 / peak, 3)

        results[precision] = {
            "ratio": round(statistics.median([o / p for o, p in zip(ours, plain)]), 3),
            "ours_img_s": round(statistics.median(ours), 1), "plain_img_s": round(statistics.median(plain), 1),
            "ours_rounds": [round(v, 1) for v in ours], "plain_rounds": [round(v, 1) for v in plain],
            "throughput_img_s": round(statistics.median(throughput), 1),
            "throughput_rounds": [round(v, 1) for v in throughput], "default_preset_img_s": round(default, 1),
            "matmul_peak_gflops": round(median_peak, 1), "peak_rounds": [round(v, 1) for v in peak],
            # each round's throughput over the peak measured right after it, then the median
            "P0_throughput": statistics.median([share(t, p) for t, p in zip(throughput, peak)]),
            "P0_ours": share(statistics.median(ours)), "P0_plain": share(statistics.median(plain), float32_peak),
        }
    return results


def p2(workdir: Path, train_img_s: float) -> dict:
    """The `default` preset's input pipeline (its augmentation included) against its training."""
    snapshot, _ = shapes_snapshot(workdir, 3000)
    cfg = load_config("default").train
    batches = make_dataset(snapshot, "train", cfg.batch_size, shuffle_buffer=cfg.shuffle_buffer,
                           augmentation=Augmentation.from_config(cfg), seed=0).repeat()
    iterator = iter(batches)
    for _ in range(20):
        next(iterator)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < 5:
        count += int(next(iterator)[0].shape[0])
    pipeline = count / (time.perf_counter() - start)
    return {"ratio": round(pipeline / train_img_s, 2), "goal": ">= 5", "pipeline_img_s": round(pipeline, 1),
            "train_img_s": round(train_img_s, 1)}


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
    return {"ratio": round(warm_s / cold_s, 4), "goal": "<= 0.10, no training", "cold_s": round(cold_s, 2),
            "warm_s": round(warm_s, 2),
            "warm_steps": warm["steps"], "trained_in_warm_run": warm["steps"]["train_model"] != "Cached",
            "cold_steps": cold["steps"]}


TRIVIAL_FLOW = """from prefect import flow, task

@task
def one() -> int:
    return 1

@flow
def trivial() -> int:
    return one()

trivial()
"""
TINY_RUN = ["data.train_size=40", "data.validation_size=20", "data.test_size=20", "train.epochs=1",
            'model.preset="seed"']


def _last_json(args: list[str], **kwargs) -> dict:
    """Run a command that must succeed and prints its result as its last line, in JSON."""
    out = subprocess.run(args, capture_output=True, text=True, check=True, **kwargs)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _shell_env() -> dict[str, str]:
    """This environment without `PREFECT_API_URL`: a command started with it runs Prefect's temporary server."""
    return {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}


def _cli(workdir: Path, home: str, *args: str) -> tuple[float, dict]:
    """Run `multitask ARGS --json` as a user would (its own process, Prefect's temporary server)."""
    env = {**_shell_env(), "MULTITASK_HOME": str(workdir / home)}
    started = time.perf_counter()
    out = subprocess.run([str(Path(sys.executable).parent / "multitask"), *args, "--json"], env=env, cwd=workdir,
                         capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"multitask {' '.join(args)} failed: {out.stderr[-2000:]}")
    return seconds, json.loads(out.stdout.strip().splitlines()[-1])


def p3b(workdir: Path, rounds: int = 3) -> dict:
    """A fully cached `multitask train` from the shell vs a one-task flow started the same way."""
    sets = [a for item in TINY_RUN for a in ("--set", item)]
    cold_s, _ = _cli(workdir, "p3b", "train", *sets)
    (workdir / "trivial.py").write_text(TRIVIAL_FLOW)
    warm, trivial = [], []
    for _ in range(rounds):  # alternate, so drift in machine speed hits both alike
        seconds, summary = _cli(workdir, "p3b", "train", *sets)
        if set(summary["steps"].values()) != {"Cached"}:
            raise RuntimeError(f"the warm re-run computed steps: {summary['steps']}")
        warm.append(seconds)
        started = time.perf_counter()
        subprocess.run([sys.executable, "trivial.py"], cwd=workdir, check=True, capture_output=True,
                       env=_shell_env())
        trivial.append(time.perf_counter() - started)
    return {"ratio": round(statistics.median(warm) / statistics.median(trivial), 3), "goal": "<= 1.5",
            "warm_s": [round(v, 2) for v in warm], "trivial_s": [round(v, 2) for v in trivial],
            "cold_s": round(cold_s, 2)}


def p5_p7(workdir: Path) -> tuple[dict, dict]:
    """The default recipe, no flag, cold: P7 its whole command / its training; P5 its curve."""
    wall_s, summary = _cli(workdir, "p7", "train")
    history = read_history(Path(summary["run_dir"]) / "history.json")
    cumulative, rows = 0.0, []
    for row in history:
        cumulative += row["train_seconds"]
        rows.append({"epoch": row["epoch"], "train_minutes": round(cumulative / 60, 2),
                     "val_accuracy": round(row["val_label_accuracy"], 4), "val_mean_iou": round(row["val_box_mean_iou"], 4)})
    train_s = summary["training"]["minutes"] * 60
    p7 = {"ratio": round(wall_s / train_s, 3), "goal": "<= 1.3", "wall_s": round(wall_s, 1),
          "train_s": round(train_s, 1), "training": summary["training"]}
    p5 = {"value": {k: summary["metrics"][k] for k in ("accuracy", "mean_iou", "iou50")}, "rows": rows,
          "test_images": DataConfig().test_size}
    return p5, p7


def p8() -> dict:
    """bench/serving.py in its own process (it trains, serves and exports in a workspace of its own)."""
    serving = _last_json([sys.executable, str(ROOT / "bench" / "serving.py")])
    ratio = serving["server_batch1"]["p50_ms"] / serving["in_process_batch1"]["p50_ms"]
    return {"ratio": round(ratio, 3), "goal": "reported (server p50 / in-process p50, 1 image)", **serving}


def p4_child(size: int, workdir: Path) -> dict:
    snapshot, _ = shapes_snapshot(workdir, size)
    img_s, _ = ours_images_per_second(snapshot, 2, workdir)
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report its parent's
    peak_kb = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                   if line.startswith("VmHWM:"))
    peak_mb = peak_kb / 1024
    return {"images": size, "ms_per_image": round(1000 / img_s, 4), "peak_rss_mb": round(peak_mb, 1)}


def p4(workdir: Path, sizes: list[int], rounds: int = 2) -> dict:
    """Each size in its own process (peak RSS is per process), in rounds of alternating order
    (small to large, then large to small), so drift in the machine's speed hits every size
    alike; each size keeps its fastest round and its largest peak RSS."""
    for size in sizes:
        shapes_snapshot(workdir, size)  # built here, so the child's peak RSS is training's alone
    runs: dict[int, list[dict]] = {size: [] for size in sizes}
    for round_ in range(rounds):
        for size in (sizes if round_ % 2 == 0 else sizes[::-1]):
            runs[size].append(_last_json([sys.executable, __file__, "--p4-child", str(size), "--workdir", str(workdir)]))
    rows = [{"images": size, "ms_per_image": min(r["ms_per_image"] for r in runs[size]),
             "peak_rss_mb": max(r["peak_rss_mb"] for r in runs[size]),
             "rounds_ms_per_image": [r["ms_per_image"] for r in runs[size]]} for size in sizes]
    times = [r["ms_per_image"] for r in rows]
    rss = [r["peak_rss_mb"] for r in rows]
    return {"ratio": round(max(times) / min(times) - 1, 3), "goal": "time spread within 15%, RSS flat",
            "rss_spread": round(max(rss) / min(rss) - 1, 3), "rows": rows}


def step_profile() -> list[dict]:
    """bench/step_profile.py at the preset's batch and the throughput mode's, in a process of its own."""
    return _last_json([sys.executable, str(ROOT / "bench" / "step_profile.py"), "--batch", "32", str(THROUGHPUT_BATCH)])


def split_p0_p1(raw: dict) -> tuple[dict, dict]:
    f32, bf16 = raw["float32"], raw["mixed_bfloat16"]
    p0 = {"ratio": f32["P0_throughput"], "goal": ">= 0.5", "batch": THROUGHPUT_BATCH, **raw,
          "step_profile": step_profile()}
    p1 = {"ratio": f32["ratio"], "goal": ">= 1.0", "bf16_ratio": bf16["ratio"], "bf16_goal": ">= 2.0"}
    return p0, p1


def table(results: dict) -> list[str]:
    r = results
    f32, bf16 = r["P0"]["float32"], r["P0"]["mixed_bfloat16"]
    p6 = r["P6"]
    p6_text = "; ".join(f"{name} accuracy {b['points']['accuracy']:+}, mean IoU {b['points']['mean_iou']:+}"
                        for name, b in p6["datasets"].items())
    return [
        "| id | figure | value | goal |",
        "|---|---|---|---|",
        f"| P0 | training FLOP/s of `seed` / matmul peak, float32, batch {r['P0']['batch']} (throughput mode) | "
        f"**{r['P0']['ratio']}** ({f32['throughput_img_s']} img/s; peak {f32['matmul_peak_gflops']} GFLOP/s, "
        f"{r['P0']['forward_mflop_per_image']} MFLOP/image forward) | >= 0.5 |",
        f"| P0 | same at the preset's batch 32: ours, the plain script | {f32['P0_ours']}, {f32['P0_plain']} | |",
        f"| P0 | mixed_bfloat16 vs the bf16 matmul peak: batch {r['P0']['batch']}, batch 32 | "
        f"{bf16['P0_throughput']} ({bf16['throughput_img_s']} img/s), {bf16['P0_ours']} "
        f"(peak {bf16['matmul_peak_gflops']} GFLOP/s) | |",
        f"| P1 | ours / plain images/s, float32 (batch 32) | **{r['P1']['ratio']}** ({f32['ours_img_s']} vs "
        f"{f32['plain_img_s']}) | >= 1.0 |",
        f"| P1 | ours mixed_bfloat16 / plain float32 (batch 32) | **{r['P1']['bf16_ratio']}** ({bf16['ours_img_s']} "
        f"vs {bf16['plain_img_s']}) | >= 2.0 |",
        f"| P1 | the `default` preset (our model, with augmentation): mixed_bfloat16 / float32 images/s | "
        f"{round(bf16['default_preset_img_s'] / f32['default_preset_img_s'], 3)} ({bf16['default_preset_img_s']} vs "
        f"{f32['default_preset_img_s']}) | reported |",
        f"| P2 | tf.data alone / training images/s, `default` preset, float32 | **{r['P2']['ratio']}** ({r['P2']['pipeline_img_s']} vs "
        f"{r['P2']['train_img_s']}) | >= 5 |",
        f"| P3 | warm re-run / cold run of `train_flow` (in one process) | **{r['P3']['ratio']}** ({r['P3']['warm_s']} s "
        f"vs {r['P3']['cold_s']} s; trained in warm run: {r['P3']['trained_in_warm_run']}) | <= 0.10, no training |",
        f"| P3b | fully cached `multitask train` from the shell / a one-task flow started the same way | "
        f"**{r['P3b']['ratio']}** (medians of {r['P3b']['warm_s']} s vs {r['P3b']['trivial_s']} s) | <= 1.5 |",
        f"| P4 | spread of ms/image over 1k-16k images; of peak RSS | **{r['P4']['ratio']:+.1%}**; "
        f"{r['P4']['rss_spread']:+.1%} | within 15%; flat |",
        f"| P5 | the default recipe, no flag, on `shapes`: test accuracy, mean IoU, IoU>=0.5 | "
        f"{r['P5']['value']['accuracy']}, {r['P5']['value']['mean_iou']}, {r['P5']['value']['iou50']} | "
        "(curve below) |",
        f"| P6 | mixed_bfloat16 - float32, test points, default preset, {p6['seeds']} seeds, {p6['epochs']} epochs, "
        f"{p6['train_images']} training images | **{p6['value']:+}** worst ({p6_text}) | >= -0.5 |",
        f"| P7 | cold `multitask train` (default recipe, no flag) / its training time | **{r['P7']['ratio']}** "
        f"({r['P7']['wall_s']} s vs {r['P7']['train_s']} s; {r['P7']['training']['epochs']} epochs, "
        f"{r['P7']['training']['stopped']}) | <= 1.3 |",
        f"| P8 | scoring server / in-process p50, 1 image | **{r['P8']['ratio']}** ({r['P8']['server_batch1']['p50_ms']} "
        f"vs {r['P8']['in_process_batch1']['p50_ms']} ms) | reported |",
    ]


def profile_rows(profiles: list[dict]) -> list[str]:
    def flat(profile: dict) -> list[tuple[str, float]]:  # the same parts in the same order in every profile
        parts = [(f"forward + backward of {name}", ms) for name, ms in profile["layers_ms"].items()]
        whole = [(k.removesuffix("_ms"), v) for k, v in profile.items() if k.endswith("_ms") and k != "layers_ms"]
        return parts + whole
    columns = [flat(profile) for profile in profiles]
    batches = " | ".join(f"batch {profile['batch']}" for profile in profiles)
    return [f"| part | {batches} |",
            f"|---|{'---|' * len(profiles)}",
            *(f"| {row[0][0]} | {' | '.join(str(ms) for _, ms in row)} |" for row in zip(*columns))]


def markdown(results: dict) -> str:
    """The generated part of docs/benchmarks.md: every figure written by this script."""
    m, r = results["machine"], results
    lines = [
        f"Measured by `make bench` (`python bench/run.py`) on {m['cpu']}, {m['cores']} cores, "
        f"TensorFlow {m['tensorflow']}, Keras {m['keras']}, {m['date']}, in {r['seconds'] / 60:.0f} minutes. "
        "Raw numbers: `bench/results/`. Every figure in this block is written by the script.",
        "",
        *table(results),
        "",
        f"P1 rounds (images/s), alternating ours and plain: float32 ours {r['P0']['float32']['ours_rounds']}, "
        f"plain {r['P0']['float32']['plain_rounds']}; bf16 ours {r['P0']['mixed_bfloat16']['ours_rounds']}, "
        f"plain {r['P0']['mixed_bfloat16']['plain_rounds']}. P0 rounds (throughput images/s, then the matmul "
        f"peak measured right after it, GFLOP/s): float32 {r['P0']['float32'].get('throughput_rounds', '-')}, "
        f"{r['P0']['float32'].get('peak_rounds', '-')}.",
        "",
        "P0: where a float32 training step of the `seed` model goes (bench/step_profile.py: each part "
        "alone, in a graph loop; ms per step):",
        "",
        *profile_rows(r["P0"]["step_profile"]),
        "",
        "P4 scaling (preset `seed`, epoch 2 of 2; peak RSS of a process that only trains; rounds in "
        "alternating order, each size's fastest kept):",
        "",
        "| training images | ms / image | each round | peak RSS (MB) |",
        "|---|---|---|---|",
        *(f"| {row['images']} | {row['ms_per_image']} | {row.get('rounds_ms_per_image', '')} | {row['peak_rss_mb']} |"
          for row in r["P4"]["rows"]),
        "",
        "P5: the P7 run's validation curve (preset `default`, `shapes`, 3000 training images):",
        "",
        "| epoch | training minutes | val accuracy | val mean IoU |",
        "|---|---|---|---|",
        *(f"| {row['epoch']} | {row['train_minutes']} | {row['val_accuracy']} | {row['val_mean_iou']} |"
          for row in r["P5"]["rows"]),
        "",
        "P6 runs (test accuracy / mean IoU per seed):",
        "",
        *(f"- {name}, {precision}: " + ", ".join(f"{run['accuracy']} / {run['mean_iou']}" for run in b[precision]["runs"])
          + f" ({b[precision]['train_seconds']} s of training each, mean)"
          for name, b in r["P6"]["datasets"].items() for precision in ("float32", "mixed_bfloat16")),
        "",
        f"P8 (bench/serving.py): {json.dumps({k: v for k, v in r['P8'].items() if k.startswith(('server', 'in_process', 'tflite'))})}",
    ]
    return "\n".join(lines)


def write_doc(results: dict) -> None:
    """Replace the generated block of docs/benchmarks.md, keeping the written sections around it."""
    text = DOC.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    DOC.write_text(text[:start] + BEGIN + "\n" + markdown(results) + "\n" + END + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description="multitask benchmarks P0-P8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per P1 measurement (first one is warm-up)")
    parser.add_argument("--p4-sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--p6-seeds", type=int, default=3)
    parser.add_argument("--p6-epochs", type=int, default=12)
    parser.add_argument("--p6-images", type=int, default=2000)
    parser.add_argument("--p6-from", type=Path, help="take P6 from this JSON (an earlier `--only P6` of this machine)")
    parser.add_argument("--p4-child", type=int)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--only", nargs="+", help="measure these figures alone (e.g. P6), into a results file of "
                        "their own; docs/benchmarks.md is left as it is")
    parser.add_argument("--doc-from", type=Path, help="rewrite docs/benchmarks.md from this results file, measure nothing")
    args = parser.parse_args()
    if args.doc_from:
        write_doc(json.loads(args.doc_from.read_text()))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="multitask-bench-"))
    if args.p4_child:
        print(json.dumps(p4_child(args.p4_child, workdir)))
        return
    started = time.perf_counter()
    results: dict = {"machine": machine()}

    def p6_figure() -> dict:
        if args.p6_from:
            return {**p6_summary(json.loads(args.p6_from.read_text())["P6"]), "source": args.p6_from.name}
        return p6(workdir, args.p6_seeds, args.p6_epochs, args.p6_images)

    figures = {
        ("P0", "P1"): lambda: split_p0_p1(p0_p1(workdir, args.rounds, args.epochs)),
        ("P2",): lambda: (p2(workdir, results["P0"]["float32"]["default_preset_img_s"]),),
        ("P3",): lambda: (p3(workdir),),
        ("P3b",): lambda: (p3b(workdir),),
        ("P4",): lambda: (p4(workdir, args.p4_sizes),),
        ("P5", "P7"): lambda: p5_p7(workdir),
        ("P6",): lambda: (p6_figure(),),
        ("P8",): lambda: (p8(),),
    }
    for keys, measure in figures.items():
        if not args.only or set(keys) & set(args.only):
            results.update(zip(keys, measure()))
            print(json.dumps({key: results[key].get("ratio", results[key].get("value")) for key in keys}), flush=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"{platform.node()}-{results['machine']['date']}"
    if args.only:  # some figures alone: their own results file, the doc untouched
        out = RESULTS / f"{name}-{'-'.join(args.only)}.json"
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {out} in {results['seconds']} s")
        return
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    write_doc(results)
    print(f"wrote {out} and {DOC} in {results['seconds']} s")


if __name__ == "__main__":
    main()
