"""Slices and calibration of the default recipe: what the two averages do not say.

For each dataset (as `bench/quality.py` builds them) trains the default recipe with
`evaluate.calibrate=true` in a fresh workspace, then runs `multitask evaluate --json` on the
registered version: each head per class and per object size with 95% intervals, and the label
scores' ECE before and after the fitted temperature. Writes
bench/results/model-report-<host>-<date>-<datasets>.json, with the seed script's images/s of
the same run, and prints the markdown tables docs/quality.md shows.

    python bench/model_report.py --datasets shapes cluttered photo
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
from pathlib import Path

from quality import DATASETS, RESULTS, dataset_spec, run_command, seed_script_images_per_second, working_folder

from multitask.slices import markdown_table


def report(spec: str, seed: int, sets: list[str], workdir: Path) -> dict:
    """Train (calibrated), then evaluate the registered version on the same data's test split (`sets`
    go to both commands)."""
    home = Path(tempfile.mkdtemp(dir=workdir, prefix="ws-"))
    wall_s, trained = run_command(["train", "--dataset", spec, "--set", f"model.seed={seed}", "--set",
                                   f"train.seed={seed}", "--set", "evaluate.calibrate=true",
                                   *(a for item in sets for a in ("--set", item))], home, workdir)
    _, evaluated = run_command(["evaluate", "--model", f"{trained['model']}/{trained['version']}", "--dataset", spec,
                                *(a for item in sets for a in ("--set", item))], home, workdir)
    return {"seed": seed, "metrics": evaluated["metrics"], "slices": evaluated["slices"],
            "calibration": evaluated["calibration"], "training": trained["training"],
            "wall_minutes": round(wall_s / 60, 2)}


def markdown(name: str, block: dict) -> list[str]:
    calibration = block["calibration"]
    return [f"**{name}** (seed {block['seed']}): label ECE {calibration['ece_uncalibrated']:.4f} before, "
            f"{calibration['ece']:.4f} after temperature {calibration['temperature']:.3f}", "",
            *markdown_table(block["slices"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=3000, help="images per generated folder dataset")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="section.key=value (a quick check)")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = working_folder(args.workdir, "multitask-report-")
    date = datetime.date.today().isoformat()
    result = {"date": date, "sets": args.sets, "host": platform.node(), "cpus": os.cpu_count(),
              "seed_script_img_s": seed_script_images_per_second(workdir), "datasets": {}}
    for name in args.datasets:
        result["datasets"][name] = report(dataset_spec(name, workdir, args.count), args.seed, args.sets, workdir)
        print("\n".join(markdown(name, result["datasets"][name])), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    label = "-".join(args.datasets) + ("-check" if args.sets else "")
    out = RESULTS / f"model-report-{platform.node()}-{date}-{label}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
