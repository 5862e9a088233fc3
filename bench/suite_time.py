"""The test suite's time against issue 13's goal, measured on this machine.

Issue 13 set the goal on the planners' 2-core machine: the suite of its day (159 tests at commit
0d60fe8, one process, as `make test` ran it then) took 517 s there, and the suite must take under
300 s, its unit tier under 60 s. Machines of this kind differ up to 3x in speed, so this runs that
suite, today's tiers, and that suite again, back to back here, with the seed script's images/s
before and after, and scales each time to that machine: time here x 517 s / the old suite's mean
time here. The machine's speed drifts within a run (the same tier took 270-351 s in one day), so
the old suite runs on both sides of the tiers, and the report gives the figures scaled by each.

    python bench/suite_time.py [--no-server] [--reference 0d60fe8]

Writes bench/results/suite-<host>-<start>.json (each run's output stays in a temporary folder the
JSON names) and prints a summary: 40-60 minutes on a slow hour.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from quality import seed_script_images_per_second

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
REFERENCE_SECONDS = 517.0  # the issue-day suite on the planners' machine (issue 13)
PYTEST = "-q -p no:cacheprovider"
# name: (make target, extra pytest arguments, goal in seconds on the planners' machine or None)
TIERS = {
    "not server": ("test", '-m "not server"', 300.0),
    "fast": ("test-fast", "", 60.0),
    "server": ("test", "-m server", None),  # their own budget (issue 13), reported
}


def pytest_seconds(output: str) -> tuple[float, str]:
    """Pytest's own time and its summary line (`269 passed, 6 warnings in 506.83s`)."""
    found = [match for line in output.splitlines() if (match := re.search(r"^=* ?(.+ in ([\d.]+)s)", line))]
    if not found:
        raise SystemExit("pytest printed no summary line; its output ended with:\n" + output[-3000:])
    return float(found[-1].group(2)), found[-1].group(1).rstrip("= ")


def timed(args: list[str], cwd: Path, log: Path, env: dict | None = None) -> dict:
    """Runs one pytest command; its output goes to `log`, its failed tests into the record."""
    # PWD too: prefect.yaml's pull step runs flows in `$PWD`, which a child's `cwd` does not change
    env = {**(env or os.environ), "PWD": str(cwd)}
    started = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    log.write_text(done.stdout + done.stderr)
    seconds, summary = pytest_seconds(done.stdout)
    failed = [line for line in done.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    return {"seconds": seconds, "wall_seconds": round(wall, 1), "summary": summary, "returncode": done.returncode,
            "failed": failed, "log": str(log)}


def reference_tree(commit: str, workdir: Path) -> Path:
    """A copy of the tree at `commit`."""
    tree = workdir / "reference"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def reference_suite(tree: Path, log: Path) -> dict:
    """The old suite in `tree`, in one process with this environment's packages."""
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree}"}
    return timed([sys.executable, "-m", "pytest", *PYTEST.split()], tree, log, env)


def tier(name: str, workdir: Path) -> dict:
    target, extra, _ = TIERS[name]
    log = workdir / f"{name.replace(' ', '-')}.log"
    return timed(["make", "--no-print-directory", target, f"PYTEST_ARGS={PYTEST} {extra}"], ROOT, log)


def scaled(seconds: float, reference_seconds: float) -> float:
    """`seconds` here as seconds on the planners' machine."""
    return round(seconds * REFERENCE_SECONDS / reference_seconds, 1)


def report(result: dict) -> str:
    before, after = (run["seconds"] for run in result["references"])
    rows = [f"reference suite ({result['reference_commit']}): {before:.1f} s here before the tiers, {after:.1f} s "
            f"after, {REFERENCE_SECONDS:.0f} s there; {result['references'][-1]['summary']}"]
    for name, run in result["tiers"].items():
        goal = TIERS[name][2]
        verdict = "own budget" if goal is None else ("met" if run["on_reference_machine"] < goal else "not met")
        verdict = "tests failed" if run["returncode"] else verdict
        low, high = sorted(scaled(run["seconds"], old) for old in (before, after))
        rows.append(f"{name}: {run['seconds']:.1f} s here, {run['on_reference_machine']:.1f} s on the planners' "
                    f"machine ({low}-{high} by either run of the old suite; goal {goal or '-'}: {verdict}); "
                    f"{run['summary']}")
    speeds = result["seed_script_images_per_second"]
    rows.append(f"seed script: {speeds[0]} img/s before, {speeds[1]} after")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default="0d60fe8", help="the issue-day commit whose suite took 517 s")
    parser.add_argument("--no-server", action="store_true", help="leave out the server tier (about 400 s here)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="multitask-suite-time-"))
    started = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    tree = reference_tree(args.reference, workdir)
    speeds = [seed_script_images_per_second(workdir)]
    references = [reference_suite(tree, workdir / "reference-before.log")]
    names = [name for name in TIERS if not (args.no_server and name == "server")]
    tiers = {name: tier(name, workdir) for name in names}
    references.append(reference_suite(tree, workdir / "reference-after.log"))
    speeds.append(seed_script_images_per_second(workdir))
    mean = sum(run["seconds"] for run in references) / len(references)
    for run in tiers.values():
        run["on_reference_machine"] = scaled(run["seconds"], mean)
    result = {"started": started, "host": platform.node(), "reference_commit": args.reference,
              "references": references, "tiers": tiers, "seed_script_images_per_second": speeds}
    out = RESULTS / f"suite-{platform.node()}-{started}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
