"""P6: bfloat16 against float32 at the same budget, seeds and data: test accuracy and mean IoU.

The `default` preset trained for a fixed number of epochs (no early stop, so both precisions get
the same budget) with each of `seeds` seeds, on `shapes` and on the cluttered folder set, then
evaluated on their test splits (1000 and about 250 images). Called by bench/run.py (`--only P6`
measures it alone; `--p6-from FILE` takes it from an earlier results file of the same machine).
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from training import snapshot_of, train_once

from multitask.config import DataConfig
from multitask.config_loader import load_config
from multitask.datasets.export import write_folder
from multitask.evaluate import evaluate
from multitask.records import SnapshotRef


def p6_snapshots(workdir: Path, images: int) -> dict[str, SnapshotRef]:
    """`shapes` and the cluttered folder set, each with about `images` training images."""
    folder = workdir / "cluttered"
    if not (folder / "annotations.csv").exists():
        write_folder(folder, round(images / 0.8), style="cluttered")  # folder splits: about 80/10/10
    return {
        "shapes": snapshot_of(workdir, f"p6-shapes-{images}",
                              DataConfig(train_size=images, validation_size=300, test_size=1000)),
        "cluttered": snapshot_of(workdir, f"p6-cluttered-{images}", DataConfig(dataset=f"folder:{folder}")),
    }


def p6(workdir: Path, seeds: int, epochs: int, images: int) -> dict:
    """bfloat16 vs float32 accuracy: the default preset, the same fixed budget and seeds for both."""
    results: dict = {"seeds": seeds, "epochs": epochs, "train_images": images, "datasets": {}}
    for name, snapshot in p6_snapshots(workdir, images).items():
        block: dict = {"test_images": snapshot.splits["test"]}
        for precision in ("float32", "mixed_bfloat16"):
            runs = []
            for seed in range(seeds):
                cfg = load_config("default", sets=[f'model.precision="{precision}"', f"model.seed={seed}",
                                                   f"train.seed={seed}", f"train.epochs={epochs}",
                                                   f"train.early_stopping_patience={epochs}"])
                trained = train_once(snapshot, cfg, workdir)
                report = evaluate(trained.model_path, snapshot, cfg.evaluate, Path(tempfile.mkdtemp(dir=workdir)))
                runs.append({"seed": seed, "accuracy": report.metrics["accuracy"],
                             "mean_iou": report.metrics["mean_iou"], "train_seconds": trained.train_seconds})
                print(json.dumps({"P6": name, "precision": precision, **runs[-1]}), flush=True)
            block[precision] = {"runs": runs, **{key: round(statistics.mean(r[key] for r in runs), 4)
                                                 for key in ("accuracy", "mean_iou", "train_seconds")}}
        results["datasets"][name] = block
    return p6_summary(results)


def p6_summary(results: dict) -> dict:
    """Test points bfloat16 - float32 per dataset, and the worst of them (the figure)."""
    for block in results["datasets"].values():
        block["points"] = {key: round(100 * (block["mixed_bfloat16"][key] - block["float32"][key]), 2)
                           for key in ("accuracy", "mean_iou")}
    worst = min(v for block in results["datasets"].values() for v in block["points"].values())
    return {**results, "value": worst, "goal": ">= -0.5 points (bfloat16 - float32, worst of accuracy and mean IoU)",
            "within_half_a_point": worst >= -0.5}


def p6_from(results_file: Path) -> dict:
    """P6 as an earlier run on this machine measured it (its `P6`), summarised again, with the file's name."""
    return {**p6_summary(json.loads(results_file.read_text())["P6"]), "source": results_file.name}
