"""Running the benchmarks' child processes: commands a user would type, and scripts that print one JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def last_json(args: list[str], **kwargs) -> dict:
    """Run a command that must succeed and prints its result as its last line, in JSON."""
    out = subprocess.run(args, capture_output=True, text=True, check=True, **kwargs)
    return json.loads(out.stdout.strip().splitlines()[-1])


def shell_env() -> dict[str, str]:
    """This environment without `PREFECT_API_URL`: a command started with it runs Prefect's temporary server."""
    return {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}


def cli(workdir: Path, home: str, *args: str) -> tuple[float, dict]:
    """Run `multitask ARGS --json` as a user would (its own process, Prefect's temporary server): seconds, summary."""
    env = {**shell_env(), "MULTITASK_HOME": str(workdir / home)}
    started = time.perf_counter()
    out = subprocess.run([str(Path(sys.executable).parent / "multitask"), *args, "--json"], env=env, cwd=workdir,
                         capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"multitask {' '.join(args)} failed: {out.stderr[-2000:]}")
    return seconds, json.loads(out.stdout.strip().splitlines()[-1])
