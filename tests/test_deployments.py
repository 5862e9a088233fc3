"""`prefect deploy` of deployments/prefect.yaml against a real server, run by a real worker.

Uses the test harness's Prefect server (on loopback); every `prefect` command runs as a
subprocess, as a user would type it.
"""

import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multitask import registry

ROOT = Path(__file__).resolve().parents[1]
PREFECT = [sys.executable, "-m", "prefect"]
TINY_CONFIG = {
    "data": {"train_size": 40, "validation_size": 10, "test_size": 10, "image_size": 32},
    "train": {"epochs": 1, "batch_size": 16}, "evaluate": {"grid_size": 2},
    "gate": {"min_accuracy": 0, "min_mean_iou": 0},
}


@pytest.fixture
def cli_env(prefect_server, workspace):
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "MULTITASK_HOME": str(workspace)}


def _prefect(env, *args, timeout=240):
    result = subprocess.run([*PREFECT, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_deploy_schedule_and_run_nightly_retrain_with_a_worker(cli_env, workspace):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    started = time.monotonic()
    _prefect(cli_env, "work-pool", "create", "multitask", "--type", "process", "--overwrite")
    _prefect(cli_env, "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml")

    with get_client(sync_client=True) as client:
        deployments = {d.name: d for d in client.read_deployments()}
        assert {"train", "retrain-nightly", "watch", "retrain-on-change", "predict"} <= set(deployments)
        nightly = deployments["retrain-nightly"]
        [schedule] = nightly.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == ("0 2 * * *", "UTC", True)
        assert nightly.work_pool_name == "multitask" and nightly.entrypoint == "flows/retrain.py:retrain_flow"
        assert deployments["train"].schedules == []

    flow_run = run_deployment("retrain/retrain-nightly", parameters={"config": TINY_CONFIG}, timeout=0)
    _prefect(cli_env, "worker", "start", "--pool", "multitask", "--run-once", timeout=400)

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run.id).state
    assert state.is_completed(), state
    assert registry.champion("multitask-shapes").version == "1"
    print(f"deployment test: {time.monotonic() - started:.1f} s")


def test_serve_alternative_builds_the_same_deployments():
    serve = runpy.run_path(str(ROOT / "deployments" / "serve.py"))
    built = {d.name: d for d in serve["deployments"]()}
    assert set(built) == {"train", "retrain-nightly", "watch", "retrain-on-change", "predict"}
    [schedule] = built["retrain-nightly"].schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "UTC")
    [schedule] = built["watch"].schedules
    assert schedule.schedule.interval.total_seconds() == 600
    [trigger] = built["retrain-on-change"].triggers
    assert trigger.expect == {"multitask.dataset.changed"}
    assert trigger.parameters == {"config": {"data": {"dataset": "{{ event.resource.id }}"}}}
    assert built["predict"].parameters["model"] == "multitask-shapes@champion"
