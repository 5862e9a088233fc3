"""The test suite's time on this machine against its goals, in raw seconds as measured here.

The goals: the unit tier (`make test-fast`) under 60 s, the whole suite (`make test`, 2 worker processes) under
300 s, on 2 cores. This runs both tiers back to back, each as its make target, with the seed script's images/s
(bench/plain_seed.py) before and after: how fast the machine was during the run, since a shared machine's speed
drifts by the hour.

    python bench/suite_time.py

Writes bench/results/suite-<host>-<start>.json (each tier's output stays in a temporary folder the JSON
names) and prints a summary.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import tempfile
import time
from pathlib import Path

from quality import seed_script_images_per_second

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PYTEST = "-q -p no:cacheprovider"
TIERS = {"fast": ("test-fast", 60.0), "whole": ("test", 300.0)}  # name: (make target, goal in seconds)


def pytest_seconds(output: str) -> tuple[float, str]:
    """Pytest's own time and its summary line (`269 passed, 6 warnings in 506.83s`)."""
    found = [match for line in output.splitlines() if (match := re.search(r"^=* ?(.+ in ([\d.]+)s)", line))]
    if not found:
        raise SystemExit("pytest printed no summary line; its output ended with:\n" + output[-3000:])
    return float(found[-1].group(2)), found[-1].group(1).rstrip("= ")


def tier(name: str, workdir: Path) -> dict:
    """Runs one tier's make target; its output goes to a log in `workdir`, its failed tests into the record."""
    target, goal = TIERS[name]
    log = workdir / f"{name}.log"
    # PWD too: prefect.yaml's pull step runs flows in `$PWD`, which a child's `cwd` does not change
    env = {**os.environ, "PWD": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run(["make", "--no-print-directory", target, f"PYTEST_ARGS={PYTEST}"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    log.write_text(done.stdout + done.stderr)
    seconds, summary = pytest_seconds(done.stdout)
    failed = [line for line in done.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    return {"seconds": seconds, "wall_seconds": round(wall, 1), "goal_seconds": goal, "summary": summary,
            "returncode": done.returncode, "failed": failed, "log": str(log)}


def report(result: dict) -> str:
    rows = [f"this machine: {result['cores']} cores (the goals are for 2)"]
    for name, run in result["tiers"].items():
        met = run["seconds"] < run["goal_seconds"]
        verdict = "tests failed" if run["returncode"] else ("met" if met else "not met")
        rows.append(f"{name} (make {TIERS[name][0]}): {run['seconds']:.1f} s here, goal under "
                    f"{run['goal_seconds']:.0f} s: {verdict}; {run['summary']}")
    speeds = result["seed_script_images_per_second"]
    rows.append(f"seed script: {speeds[0]} img/s before, {speeds[1]} after")
    return "\n".join(rows)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="multitask-suite-time-"))
    started = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    speeds = [seed_script_images_per_second(workdir)]
    tiers = {name: tier(name, workdir) for name in TIERS}
    speeds.append(seed_script_images_per_second(workdir))
    result = {"started": started, "host": platform.node(), "cores": os.cpu_count(), "tiers": tiers,
              "seed_script_images_per_second": speeds}
    out = RESULTS / f"suite-{platform.node()}-{started}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
