"""P5 and P7, from one cold `multitask train` of the default recipe (no flag, `shapes`) started as a user would.

P7 fixed overhead: the whole command's wall time / its training time. P5 quality per CPU-minute: the run's
validation curve against cumulative training minutes, and its test metrics.
"""

from __future__ import annotations

from pathlib import Path

from commands import cli

from multitask.config import DataConfig
from multitask.train import read_history


def curve(history: list[dict]) -> list[dict]:
    """Validation accuracy and mean IoU per epoch, against the training minutes up to that epoch."""
    cumulative, rows = 0.0, []
    for row in history:
        cumulative += row["train_seconds"]
        rows.append({"epoch": row["epoch"], "train_minutes": round(cumulative / 60, 2),
                     "val_accuracy": round(row["val_label_accuracy"], 4),
                     "val_mean_iou": round(row["val_box_mean_iou"], 4)})
    return rows


def p5_p7(workdir: Path) -> tuple[dict, dict]:
    wall_s, summary = cli(workdir, "p7", "train")
    rows = curve(read_history(Path(summary["run_dir"]) / "history.json"))
    train_s = summary["training"]["minutes"] * 60
    p7 = {"ratio": round(wall_s / train_s, 3), "goal": "<= 1.3", "wall_s": round(wall_s, 1),
          "train_s": round(train_s, 1), "training": summary["training"]}
    p5 = {"value": {k: summary["metrics"][k] for k in ("accuracy", "mean_iou", "iou50")}, "rows": rows,
          "test_images": DataConfig().test_size}
    return p5, p7
