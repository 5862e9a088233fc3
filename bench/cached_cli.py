"""P3b cached from the shell: a fully cached `multitask train` (a tiny run) started from the shell, against
a one-task Prefect flow started the same way, wall time; what a user waits for when nothing is recomputed."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from commands import cli, shell_env

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


def p3b(workdir: Path, rounds: int = 3) -> dict:
    sets = [a for item in TINY_RUN for a in ("--set", item)]
    cold_s, _ = cli(workdir, "p3b", "train", *sets)
    (workdir / "trivial.py").write_text(TRIVIAL_FLOW)
    warm, trivial = [], []
    for _ in range(rounds):  # alternate, so drift in machine speed hits both alike
        seconds, summary = cli(workdir, "p3b", "train", *sets)
        if set(summary["steps"].values()) != {"Cached"}:
            raise RuntimeError(f"the warm re-run computed steps: {summary['steps']}")
        warm.append(seconds)
        started = time.perf_counter()
        subprocess.run([sys.executable, "trivial.py"], cwd=workdir, check=True, capture_output=True, env=shell_env())
        trivial.append(time.perf_counter() - started)
    return {"ratio": round(statistics.median(warm) / statistics.median(trivial), 3), "goal": "<= 1.5",
            "warm_s": [round(v, 2) for v in warm], "trivial_s": [round(v, 2) for v in trivial],
            "cold_s": round(cold_s, 2)}
