"""P9 time to quality: wall minutes of `multitask train --dataset SPEC` (the default recipe, no flag but the
seeds) until the validation split first reaches the quality goals of docs/quality.md, and until training stops,
on `shapes`, the cluttered set and the photo set, over seeds.

Each run's epochs are timed by its history (`history.json`); the minutes to the target are the run's wall time
as if it had stopped after that epoch: the command's fixed cost (wall time minus every epoch's) plus the epochs up
to it. Minutes also appear as seed-script epochs (minutes x the seed script's images/s measured in the same run /
training images per epoch), so machines of different speeds compare. A reference recipe (`--p9-reference`, the
`--set`s that give an earlier default) is run on the same seeds in the same run; `ratio` is then the photo set's
median time to target of the default over the reference's.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from quality import dataset_spec, run_train, seed_script_images_per_second

TARGETS = {"shapes": (0.98, 0.85), "cluttered": (0.97, 0.85), "photo": (0.97, 0.85)}  # validation accuracy, mean IoU


def first_on_target(history: list[dict], accuracy: float, mean_iou: float) -> int | None:
    """The first epoch whose validation accuracy and mean IoU both reach the target, or None."""
    return next((row["epoch"] for row in history
                 if row["val_label_accuracy"] >= accuracy and row["val_box_mean_iou"] >= mean_iou), None)


def timing(wall_s: float, history_path: Path, target: tuple[float, float], seed_img_s: float) -> dict:
    """One run's minutes to target and to the end, in minutes and in seed-script epochs."""
    saved = json.loads(history_path.read_text())
    history, images = saved["epochs"], saved["train_images"]
    fixed_s = wall_s - sum(row["epoch_seconds"] for row in history)
    hit = first_on_target(history, *target)
    to_target_s = None if hit is None else fixed_s + sum(row["epoch_seconds"] for row in history[:hit])

    def seed_epochs(seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds * seed_img_s / images, 1)

    return {"epochs": len(history), "target_epoch": hit, "train_images": images,
            "to_target_min": None if to_target_s is None else round(to_target_s / 60, 2),
            "to_stop_min": round(wall_s / 60, 2), "fixed_min": round(fixed_s / 60, 2),
            "to_target_seed_epochs": seed_epochs(to_target_s), "to_stop_seed_epochs": seed_epochs(wall_s)}


def one_run(name: str, spec: str, seed: int, sets: list[str], workdir: Path, seed_img_s: float) -> dict:
    wall_s, summary = run_train(spec, seed, sets, workdir)
    run = {"seed": seed, **timing(wall_s, Path(summary["run_dir"]) / "history.json", TARGETS[name], seed_img_s),
           "test_accuracy": summary["metrics"]["accuracy"], "test_mean_iou": summary["metrics"]["mean_iou"]}
    print(f"P9 {name} {' '.join(sets) or 'default'} seed {seed}: {run}", flush=True)
    return run


def median_minutes(runs: list[dict], key: str) -> float | None:
    """The (upper) median over runs, a run that never reached the target counting as longer than any; None when
    the median run did not reach it."""
    middle = statistics.median_high(math.inf if run[key] is None else run[key] for run in runs)
    return None if math.isinf(middle) else round(middle, 2)


def p9(workdir: Path, datasets: list[str], seeds: int, count: int, reference: list[str]) -> dict:
    """P9 on `datasets`, seeds 0 .. seeds-1, generated sets of `count` images; with `reference` sets, that recipe
    too, each of its runs right after the default's run of the same seed."""
    seed_img_s = seed_script_images_per_second(workdir)
    recipes = {"default": [], **({"reference": reference} if reference else {})}
    result: dict = {"seed_script_img_s": seed_img_s, "targets": {n: TARGETS[n] for n in datasets},
                    "reference_sets": reference, "datasets": {}}
    for name in datasets:
        spec = dataset_spec(name, workdir, count)
        runs: dict[str, list[dict]] = {recipe: [] for recipe in recipes}
        for seed in range(seeds):
            for recipe, sets in recipes.items():
                runs[recipe].append(one_run(name, spec, seed, sets, workdir, seed_img_s))
        result["datasets"][name] = {
            recipe: {"runs": done, "reached": f"{sum(r['to_target_min'] is not None for r in done)}/{len(done)}",
                     "to_target_min": median_minutes(done, "to_target_min"),
                     "to_stop_min": median_minutes(done, "to_stop_min")}
            for recipe, done in runs.items()}
    photo = result["datasets"].get("photo", {})
    ours, before = (photo.get(recipe, {}).get("to_target_min") for recipe in ("default", "reference"))
    result["ratio"] = round(ours / before, 3) if ours and before else None
    result["value"] = ours
    return result
