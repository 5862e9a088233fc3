"""Calibrate the models of earlier runs again with this checkout's code, and measure their ECE.

For each workspace given (a `bench/model_report.py` or `multitask train` run of one dataset),
takes its trained model before calibration (`steps/train_model/*/model.keras`) and its snapshot,
fits the temperature on the validation split as `evaluate.calibrate = true` does, and evaluates
the calibrated model on the test split: the label scores' ECE before and after, and the
temperature. For when the calibration code changed after a long training run; the training is
not repeated. Writes bench/results/recalibrate-<host>-<date>.json.

    python bench/recalibrate.py /work/runs/mr/ws-abc /work/runs/mr/ws-def
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import tempfile
from pathlib import Path

from quality import RESULTS

from multitask.calibration import calibrate
from multitask.config import EvaluateConfig
from multitask.evaluate import evaluate
from multitask.fingerprint import hash_tree
from multitask.model import load
from multitask.records import PROFILE_FILE, SnapshotRef, TrainedModelRef, hash_files


def recalibrate(workspace: Path, out: Path) -> dict:
    run = next((workspace / "steps" / "train_model").iterdir())
    snapshot_dir = next((workspace / "steps" / "build_snapshot").iterdir())
    profile = json.loads((snapshot_dir / PROFILE_FILE).read_text())
    snapshot = SnapshotRef(path=str(snapshot_dir), class_names=profile["class_names"],
                           splits={split: block["count"] for split, block in profile["splits"].items()},
                           image_size=load(run / "model.keras", compile=False).input_shape[1],
                           fingerprint=hash_tree(snapshot_dir))
    files = [run / "model.keras", run / "history.json"]
    trained = TrainedModelRef(run_dir=str(run), model_path=str(files[0]), history_path=str(files[1]), epochs=0,
                              best_epoch=0, train_seconds=0.0, images_per_second=0.0, fingerprint=hash_files(files))
    calibrated = calibrate(trained, snapshot, EvaluateConfig().batch_size, out / "calibrated")
    report = evaluate(calibrated.model_path, snapshot, EvaluateConfig(), out / "evaluation",
                      temperature=calibrated.temperature)
    return {"workspace": str(workspace), "dataset_classes": len(snapshot.class_names),
            "test_images": snapshot.splits["test"], "accuracy": report.metrics["accuracy"], **report.calibration}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspaces", nargs="+", type=Path)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="multitask-recalibrate-"))
    rows = [recalibrate(ws.resolve(), out / ws.name) for ws in args.workspaces]
    for row in rows:
        print(json.dumps(row), flush=True)
    date = datetime.date.today().isoformat()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"recalibrate-{platform.node()}-{date}.json"
    path.write_text(json.dumps({"date": date, "host": platform.node(), "runs": rows}, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
