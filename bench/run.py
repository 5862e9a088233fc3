"""`make bench`: figures P0-P9, measured here, written to bench/results/ and docs/benchmarks.md.

P0 distance to the limit   training FLOP/s of preset `seed` / TF matmul peak (same dtype)    throughput.py
P0-default                 the same for the `default` preset at 128 px, float32               throughput.py
P1 throughput ratio        ours (snapshot -> tf.data -> library train) / the plain script     throughput.py
P2 input headroom          tf.data pipeline alone / training, images/s                        input_pipeline.py
P3 warm re-run             unchanged train_flow re-run / cold run, wall time                  rerun.py
P3b cached from the shell  fully cached `multitask train` / a one-task Prefect flow           cached_cli.py
P4 scaling                 time per training image and peak RSS at 1k, 4k, 16k images         scaling.py
P5 quality per CPU-minute  the default recipe's validation curve against training time        cold_train.py
P6 bfloat16 accuracy       mixed_bfloat16 - float32 test points                               precision.py
P7 fixed overhead          cold `multitask train` of the default recipe / its training time   cold_train.py
P8 serving                 MLflow scoring server / in-process prediction latency              serving.py
P9 time to quality         minutes of `multitask train` until validation reaches the goals     time_to_quality.py

The results file holds every figure's raw numbers; bench/report.py renders docs/benchmarks.md's block from it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Set before the imports below: TensorFlow reads its log level when first imported; Prefect's analytics setting
# then reaches every flow and server the figures start, here and in child processes.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from cached_cli import p3b  # noqa: E402
from cold_train import p5_p7  # noqa: E402
from input_pipeline import p2  # noqa: E402
from precision import p6, p6_from  # noqa: E402
from quality import DATASETS  # noqa: E402
from report import DOC, write_doc  # noqa: E402
from rerun import p3  # noqa: E402
from scaling import p4, p4_child  # noqa: E402
from serving import p8  # noqa: E402
from throughput import p0_default, p0_p1  # noqa: E402
from time_to_quality import p9  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "date": datetime.date.today().isoformat(),
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}


def figures(args: argparse.Namespace, workdir: Path, results: dict) -> dict[tuple[str, ...], Callable[[], tuple]]:
    """Each group of figures measured together, in the order they run (P2 divides by P0's default-preset speed)."""
    def p6_figure() -> dict:
        return p6_from(args.p6_from) if args.p6_from else p6(workdir, args.p6_seeds, args.p6_epochs, args.p6_images)

    return {
        ("P0", "P1"): lambda: p0_p1(workdir, args.rounds, args.epochs),
        ("P0-default",): lambda: (p0_default(),),
        ("P2",): lambda: (p2(workdir, results["P0"]["float32"]["default_preset_img_s"]),),
        ("P3",): lambda: (p3(workdir),),
        ("P3b",): lambda: (p3b(workdir),),
        ("P4",): lambda: (p4(workdir, args.p4_sizes),),
        ("P5", "P7"): lambda: p5_p7(workdir),
        ("P6",): lambda: (p6_figure(),),
        ("P8",): lambda: (p8(),),
        ("P9",): lambda: (p9(workdir, args.p9_datasets, args.p9_seeds, args.p9_count, args.p9_reference),),
    }


def measure(args: argparse.Namespace, workdir: Path) -> dict:
    """The chosen figures (all, or `--only`'s), with the machine and the seconds it all took."""
    started = time.perf_counter()
    results: dict = {"machine": machine()}
    for keys, figure in figures(args, workdir, results).items():
        if not args.only or set(keys) & set(args.only):
            results.update(zip(keys, figure()))
            print(json.dumps({key: results[key].get("ratio", results[key].get("value")) for key in keys}), flush=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    return results


def save(results: dict, only: list[str] | None, doc: Path) -> None:
    """bench/results/<host>-<date>.json and the doc's block; `--only`'s figures into a file of their own, the
    doc untouched."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"{platform.node()}-{results['machine']['date']}"
    out = RESULTS / (f"{name}-{'-'.join(only)}.json" if only else f"{name}.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    if only:
        print(f"wrote {out} in {results['seconds']} s")
        return
    write_doc(results, doc)
    print(f"wrote {out} and {doc} in {results['seconds']} s")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="multitask benchmarks P0-P9")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per P1 measurement (first one is warm-up)")
    parser.add_argument("--p4-sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--p6-seeds", type=int, default=3)
    parser.add_argument("--p6-epochs", type=int, default=12)
    parser.add_argument("--p6-images", type=int, default=2000)
    parser.add_argument("--p6-from", type=Path, help="take P6 from this JSON (an earlier `--only P6` of this machine)")
    parser.add_argument("--p9-datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--p9-seeds", type=int, default=3)
    parser.add_argument("--p9-count", type=int, default=3000, help="images per generated P9 dataset")
    parser.add_argument("--p9-reference", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                        help="the sets that give the recipe P9 compares the default with (e.g. an earlier default)")
    parser.add_argument("--p4-child", type=int)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--only", nargs="+", help="measure these figures alone (e.g. P6), into a results file of "
                        "their own; docs/benchmarks.md is left as it is")
    parser.add_argument("--doc-from", type=Path,
                        help="rewrite docs/benchmarks.md (or --doc) from this results file, measure nothing")
    parser.add_argument("--doc", type=Path, default=DOC,
                        help="the document whose generated block is rewritten (default: docs/benchmarks.md)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.doc_from:
        write_doc(json.loads(args.doc_from.read_text()), args.doc)
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="multitask-bench-"))
    if args.p4_child:  # P4's child process: one size's training
        print(json.dumps(p4_child(args.p4_child, workdir)))
        return
    save(measure(args, workdir), args.only, args.doc)


if __name__ == "__main__":
    main()
