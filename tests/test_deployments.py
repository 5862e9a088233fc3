"""`prefect deploy` of deployments/prefect.yaml against a real server, run by a real worker.

Uses the test harness's Prefect server (on loopback); every `prefect` command runs as a
subprocess, as a user would type it.
"""

import os
import runpy
import time
from pathlib import Path

import pytest

from multitask import registry

from helpers import run_prefect, tiny_parameters

ROOT = Path(__file__).resolve().parents[1]
NO_FLOORS = ("gate.min_accuracy=0", "gate.min_mean_iou=0")


@pytest.fixture
def cli_env(prefect_server, workspace):
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "MULTITASK_HOME": str(workspace)}


@pytest.mark.server
def test_deploy_schedule_and_run_nightly_retrain_with_a_worker(cli_env, workspace):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    started = time.monotonic()
    run_prefect(cli_env, "work-pool", "create", "multitask", "--type", "process", "--overwrite")
    run_prefect(cli_env, "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml")

    with get_client(sync_client=True) as client:
        deployments = {d.name: d for d in client.read_deployments()}
        assert {"train", "retrain-nightly", "watch", "retrain-on-change", "predict"} <= set(deployments)
        nightly = deployments["retrain-nightly"]
        [schedule] = nightly.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == ("0 2 * * *", "UTC", True)
        assert nightly.work_pool_name == "multitask" and nightly.entrypoint == "flows/retrain.py:retrain_flow"
        assert deployments["train"].schedules == []

    flow_run = run_deployment("retrain/retrain-nightly", parameters=tiny_parameters(*NO_FLOORS), timeout=0)
    run_prefect(cli_env, "worker", "start", "--pool", "multitask", "--run-once", timeout=400)

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run.id).state
    assert state.is_completed(), state
    assert registry.champion("multitask-shapes").version == "1"
    print(f"deployment test: {time.monotonic() - started:.1f} s")


def test_serve_alternative_builds_the_same_deployments():
    serve = runpy.run_path(str(ROOT / "deployments" / "serve.py"))
    built = {d.name: d for d in serve["deployments"]()}
    assert set(built) == {"train", "retrain-nightly", "watch", "retrain-on-change", "tune", "predict"}
    [schedule] = built["retrain-nightly"].schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "UTC")
    [schedule] = built["watch"].schedules
    assert schedule.schedule.interval.total_seconds() == 600
    [trigger] = built["retrain-on-change"].triggers
    assert trigger.expect == {"multitask.dataset.changed", "multitask.dataset.drifted"}
    assert built["watch"].parameters == {"dataset": "shapes", "trigger": "change"}
    assert trigger.parameters == {"config": {"data": {"dataset": "{{ event.resource.id }}"}}}
    assert built["predict"].parameters["model"] == "multitask-shapes@champion"
    assert {"config", "space", "trials", "concurrency"} <= set(built["tune"].parameters)
