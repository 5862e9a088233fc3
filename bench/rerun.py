"""P3 warm re-run: an unchanged `train_flow` (the `default` preset, 2 epochs) run again in the same process,
against its cold run, wall time; the warm run must train nothing."""

from __future__ import annotations

import os
import time
from pathlib import Path

from multitask.config_loader import load_config


def p3(workdir: Path) -> dict:
    # Imported here, not at the top: P4's child processes import this module (through run.py) and measure
    # their peak RSS, which importing Prefect and the flows would raise by about 40 MB.
    from prefect import flow

    from flows.train import train_flow

    @flow
    def start_server() -> None:  # the ephemeral API server starts once, before either timing
        return None

    os.environ["MULTITASK_HOME"] = str(workdir / "p3")
    start_server()
    cfg = load_config("default", sets=["train.epochs=2"])
    start = time.perf_counter()
    cold = train_flow(config=cfg)
    cold_s = time.perf_counter() - start
    start = time.perf_counter()
    warm = train_flow(config=cfg)
    warm_s = time.perf_counter() - start
    return {"ratio": round(warm_s / cold_s, 4), "goal": "<= 0.10, no training", "cold_s": round(cold_s, 2),
            "warm_s": round(warm_s, 2),
            "warm_steps": warm["steps"], "trained_in_warm_run": warm["steps"]["train_model"] != "Cached",
            "cold_steps": cold["steps"]}
