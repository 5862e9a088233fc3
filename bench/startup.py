"""Seconds of one tiny training (2 epochs) and one evaluation through the library, for a preset:
what the tests' fixtures pay per model, nearly all of it TensorFlow tracing the train, test and
predict steps (a training on real data pays the same once, at its first epoch).

    python bench/startup.py PRESET [--set section.key=JSON ...]

Prints one JSON line: preset, sets, train_s (building and saving the initial model included),
evaluate_s and the test metrics. To compare two commits, run it from a checkout of each with
`PYTHONPATH=CHECKOUT/src:CHECKOUT` (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from training import snapshot_of, train_once  # noqa: E402

from multitask.evaluate import evaluate  # noqa: E402

from helpers import tiny_config  # noqa: E402  (the tests' tiny data, so the figures are theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("preset")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="multitask-startup-"))

    cfg = tiny_config(f'model.preset="{args.preset}"', "train.epochs=2", *args.sets)
    snapshot = snapshot_of(workdir, "snapshot", cfg.data)
    start = time.perf_counter()
    trained = train_once(snapshot, cfg, workdir)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    report = evaluate(trained.model_path, snapshot, cfg.evaluate, workdir / "evaluation", trained.history_path)
    print(json.dumps({"preset": args.preset, "sets": args.sets, "train_s": round(train_s, 1),
                      "evaluate_s": round(time.perf_counter() - start, 1), "metrics": report.metrics}))


if __name__ == "__main__":
    main()
