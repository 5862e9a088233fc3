"""What pruning saves and what a search finds: `multitask tune` on a generated set, against the same trials
run to their end and against the default recipe.

1. `multitask tune --dataset SPEC --space SPACE --trials N --concurrency K --json` in a fresh workspace: wall
   minutes, and each trial's values, state and epochs (from the study).
2. The same trials without pruning: a complete trial already ran to its end; each pruned one is trained to its
   end with `multitask train --set` of its values, in the same workspace (its data steps cached). Trial-epochs
   with pruning against without.
3. The best config (`train --config best.toml`, the best trial trained again: its test metrics) against the
   default recipe's test metrics over `--reference-seeds` seeds.

Minutes are reported next to the seed script's images/s measured at the start of the same run.

    python bench/tune_search.py                                  # photo set, 12 trials at concurrency 2
    python bench/tune_search.py --dataset shapes --trials 4 --reference-seeds 1 --set train.epochs=3

Writes bench/results/tune-<host>-<date>-<dataset>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
from pathlib import Path

from quality import (
    DATASETS,
    RESULTS,
    dataset_spec,
    run_command,
    run_train,
    seed_script_images_per_second,
    working_folder,
)

from multitask import tuning

SPACE = "train.learning_rate=3e-4..3e-3:log, train.box_loss_weight=3..30, data.image_size=96|128|160"


def study_trials(home: Path, study: str) -> list[dict]:
    """Each trial of the study that was not retried: number, state, epochs reported and values."""
    os.environ["MULTITASK_HOME"] = str(home)  # where `tuning.storage` looks; the commands get it explicitly
    trials = tuning.trials(study)
    return [{"trial": t.number, "state": t.state.name.lower(), "epochs": len(t.intermediate_values),
             "values": t.params} for t in trials if not t.user_attrs.get(tuning.RETRIED)]


def unpruned_epochs(trials: list[dict], spec: str, sets: list[str], home: Path, workdir: Path) -> int:
    """Epochs the trials take run to their end: a complete trial's own; a pruned one trained again unpruned."""
    total = 0
    for trial in trials:
        if trial["state"] != "pruned":
            total += trial["epochs"]
            continue
        chosen = [f"{key}={json.dumps(value)}" for key, value in trial["values"].items()]
        _, summary = run_command(["train", "--dataset", spec, *(a for s in [*sets, *chosen] for a in ("--set", s))],
                                 home, workdir)
        trial["epochs_unpruned"] = summary["training"]["epochs"]
        total += summary["training"]["epochs"]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="photo", choices=list(DATASETS))
    parser.add_argument("--count", type=int, default=3000, help="images of a generated dataset")
    parser.add_argument("--space", default=SPACE)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--reference-seeds", type=int, default=3, help="seeds of the default recipe to compare with")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="section.key=value for every run")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = working_folder(args.workdir, "multitask-tune-")
    result = {"date": datetime.date.today().isoformat(), "host": platform.node(), "cpus": os.cpu_count(),
              "seed_script_img_s": seed_script_images_per_second(workdir), "space": args.space,
              "trials": args.trials, "concurrency": args.concurrency, "sets": args.sets}
    spec = dataset_spec(args.dataset, workdir, args.count)
    home = workdir / "tune-ws"
    sets = [a for s in args.sets for a in ("--set", s)]
    wall_s, tuned = run_command(["tune", "--dataset", spec, "--space", args.space, "--trials", str(args.trials),
                                 "--concurrency", str(args.concurrency), *sets], home, workdir)
    trials = study_trials(home, tuned["study"])
    result["tune"] = {**tuned, "wall_minutes": round(wall_s / 60, 2), "trial_list": trials,
                      "trial_epochs": sum(t["epochs"] for t in trials)}
    result["tune"]["trial_epochs_unpruned"] = unpruned_epochs(trials, spec, args.sets, home, workdir)
    _, best = run_command(["train", "--dataset", spec, "--config", tuned["config"], *sets], home, workdir)
    result["best_test"] = best["metrics"]
    defaults = [run_train(spec, seed, args.sets, workdir)[1]["metrics"] for seed in range(args.reference_seeds)]
    result["default_test"] = {key: round(statistics.mean(m[key] for m in defaults), 4)
                              for key in ("accuracy", "mean_iou")} | {"runs": defaults}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"tune-{platform.node()}-{result['date']}-{args.dataset}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result["tune"][k] for k in ("wall_minutes", "trial_epochs", "trial_epochs_unpruned",
                                                       "trials", "best")}))
    print(f"best {result['best_test']}\ndefault {result['default_test']}\nwrote {out}")


if __name__ == "__main__":
    main()
