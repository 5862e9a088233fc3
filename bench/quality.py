"""`make quality`: the default recipe on data we did not tune on, as a user would run it.

For each dataset (`shapes`; the cluttered folder set; glyphs on photographs) and seed, runs
`multitask train --dataset SPEC --json` in a fresh workspace (every step computed) with no
other flag but the seeds and any `--set` given here, and records test accuracy, mean IoU,
IoU>=0.5, epochs run, why training stopped and training minutes, next to the starting
point's script speed (images/s) measured in the same run: how fast this machine was that hour.
Writes bench/results/quality-<host>-<date>-<label>-<datasets>.json; `--doc` rewrites
docs/quality.md's results table from every quality-*.json of this machine and date.

    python bench/quality.py --seeds 3                     # the default recipe
    python bench/quality.py --label no-aug --set train.augment_scale=0 --datasets photo
    python bench/quality.py --datasets photo --first-seed 1 --seeds 2   # seeds 1 and 2 only
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
DATASETS = {"shapes": None, "cluttered": "cluttered", "photo": "photo"}  # name -> export style


def working_folder(given: Path | None, prefix: str) -> Path:
    """`--workdir` (created if missing), or a new temporary folder named `prefix...`."""
    workdir = (given or Path(tempfile.mkdtemp(prefix=prefix))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir

def seed_script_images_per_second(workdir: Path) -> float:
    """The starting point's script (bench/plain_seed.py) on 3000 `shapes` images, in a child process."""
    code = ("import sys; sys.path.insert(0, 'bench'); from pathlib import Path; "
            "from training import plain_images_per_second, shapes_snapshot; "
            f"print(plain_images_per_second(shapes_snapshot(Path({str(workdir)!r}), 3000), 3))")
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", **os.environ}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, env=env)
    return round(float(out.stdout.strip().splitlines()[-1]), 1)


def dataset_spec(name: str, workdir: Path, count: int) -> str:
    style = DATASETS[name]
    if style is None:
        return name
    folder = workdir / "data" / name
    if not (folder / "annotations.csv").exists():
        subprocess.run([sys.executable, "-m", "multitask.datasets.export", str(folder), "--count", str(count),
                        "--style", style], check=True, capture_output=True)
    return f"folder:{folder}"


def run_train(spec: str, seed: int, sets: list[str], workdir: Path) -> tuple[float, dict]:
    """`multitask train --dataset SPEC --json` with these seeds and sets in a fresh workspace: wall seconds and
    the JSON summary."""
    home = Path(tempfile.mkdtemp(dir=workdir, prefix="ws-"))
    return run_command(["train", "--dataset", spec, "--set", f"model.seed={seed}", "--set", f"train.seed={seed}",
                        *(a for item in sets for a in ("--set", item))], home, workdir)


def run_command(args: list[str], home: Path, workdir: Path) -> tuple[float, dict]:
    """`multitask ARGS --json` in the workspace `home`: wall seconds and the JSON line."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "cli", *args, "--json"], cwd=workdir, capture_output=True,
                         text=True, env={**os.environ, "MULTITASK_HOME": str(home)})
    if out.returncode != 0:
        raise RuntimeError(f"multitask {' '.join(args)} failed: {out.stderr[-2000:]}")
    return time.perf_counter() - started, json.loads(out.stdout.strip().splitlines()[-1])


def train_once(spec: str, seed: int, sets: list[str], workdir: Path) -> dict:
    wall_s, summary = run_train(spec, seed, sets, workdir)
    return {"seed": seed, **summary["metrics"], **summary["training"], "wall_minutes": round(wall_s / 60, 2)}


def summarise(runs: list[dict]) -> dict:
    def mean_std(key: str) -> list[float]:
        values = [r[key] for r in runs]
        return [round(statistics.mean(values), 4), round(statistics.pstdev(values), 4)]
    return {key: mean_std(key) for key in ("accuracy", "mean_iou", "iou50", "epochs", "minutes")}


def markdown_rows(results: list[dict]) -> list[str]:
    rows = ["| label | dataset | seeds | accuracy | mean IoU | IoU>=0.5 | epochs (stopped) | training min | "
            "seed script img/s |", "|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        for name, block in result["datasets"].items():
            s = block["summary"]
            stops = ", ".join(sorted({r["stopped"] for r in block["runs"]}))
            rows.append(f"| {result['label']} | {name} | {len(block['runs'])} | {s['accuracy'][0]:.4f} ± "
                        f"{s['accuracy'][1]:.4f} | {s['mean_iou'][0]:.4f} ± {s['mean_iou'][1]:.4f} | "
                        f"{s['iou50'][0]:.4f} | {s['epochs'][0]:.1f} ({stops}) | {s['minutes'][0]:.1f} | "
                        f"{result['seed_script_img_s']} |")
    return rows


def write_doc(results_files: list[Path]) -> Path:
    """Replace the block between the markers in docs/quality.md with the table of these results."""
    doc = ROOT / "docs" / "quality.md"
    results = [json.loads(p.read_text()) for p in sorted(results_files)]
    table = "\n".join(["<!-- results:start -->", *markdown_rows(results), "<!-- results:end -->"])
    text = doc.read_text()
    start, end = text.index("<!-- results:start -->"), text.index("<!-- results:end -->") + len("<!-- results:end -->")
    doc.write_text(text[:start] + table + text[end:])
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--first-seed", type=int, default=0, help="run seeds first .. first+seeds-1")
    parser.add_argument("--count", type=int, default=3000, help="images per generated folder dataset")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="section.key=value for every run")
    parser.add_argument("--label", default="default")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--doc", action="store_true", help="rewrite docs/quality.md from this date's results")
    args = parser.parse_args()
    workdir = working_folder(args.workdir, "multitask-quality-")
    date = datetime.date.today().isoformat()
    result = {"label": args.label, "sets": args.sets, "date": date, "host": platform.node(),
              "cpus": os.cpu_count(), "seed_script_img_s": seed_script_images_per_second(workdir), "datasets": {}}
    for name in args.datasets:
        spec = dataset_spec(name, workdir, args.count)
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        runs = [train_once(spec, seed, args.sets, workdir) for seed in seeds]
        result["datasets"][name] = {"spec": spec, "runs": runs, "summary": summarise(runs)}
        print(json.dumps({name: result["datasets"][name]["summary"]}), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"quality-{platform.node()}-{date}-{args.label}-{'-'.join(args.datasets)}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    if args.doc:
        print(f"wrote {write_doc(sorted(RESULTS.glob(f'quality-{platform.node()}-{date}-*.json')))}")


if __name__ == "__main__":
    main()
