"""The team stack (deployments/stack/up.sh): PostgreSQL, a Prefect server and an MLflow tracking
server on it, and a process worker, all real, on 127.0.0.1, started once for this module.

The flow runs are the worker's: deployed with `prefect deploy --all`, run from the server,
registered through the MLflow server and read back through its REST API.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import run_prefect, stack_module, tiny_parameters

pytestmark = [pytest.mark.slow, pytest.mark.server, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / "deployments" / "stack"
LOAD_RUNS = 8


def _exports(stdout: str) -> dict[str, str]:
    """What `eval "$(up.sh DIR)"` sets, evaluated by bash as a user's shell would."""
    shown = subprocess.run(["bash", "-c", 'eval "$1" && env -0', "_", stdout], capture_output=True,
                           check=True).stdout.decode()
    names = [line.split("=", 1)[0].removeprefix("export ") for line in stdout.splitlines()]
    values = dict(item.split("=", 1) for item in shown.split("\0") if "=" in item)
    return {name: values[name] for name in names}


@pytest.fixture(scope="module")
def stack():
    # Not under pytest's tmp (mode 700): as root, PostgreSQL runs as `nobody`, who must enter DIR.
    root = Path(tempfile.mkdtemp(prefix="multitask-stack-"))
    python = {"PYTHON": sys.executable}
    started = time.monotonic()
    up = subprocess.run([str(STACK / "up.sh"), str(root)], capture_output=True, text=True, timeout=420,
                        env={**os.environ, **python})
    try:
        assert up.returncode == 0, up.stderr + "".join(p.read_text()[-3000:] for p in (root / "logs").glob("*"))
        print(f"stack up in {time.monotonic() - started:.1f} s")
        yield stack_module().Stack(root), up, _exports(up.stdout)
    finally:
        subprocess.run([str(STACK / "down.sh"), str(root)], timeout=180, env={**os.environ, **python})
        left = _processes_of(root)
        shutil.rmtree(root, ignore_errors=True)
    # down.sh stops the flow runs in flight too (`deployed` leaves one); Prefect starts each in a
    # session of its own.
    assert not left, f"still running after down.sh: {left}"


def _processes_of(root: Path) -> list[str]:
    """Command lines of the processes whose environment points into the stack's folder."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"={root}/".encode() in environ.read_bytes():
                found.append((environ.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _secrets(stack) -> dict[str, str]:
    return {p.name: p.read_text() for p in stack.secrets.iterdir()}


def test_up_prints_exports_and_keeps_secrets_to_files(stack):
    st, up, env = stack
    assert set(env) == {"PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_URI",
                        "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
    assert env["PREFECT_API_URL"].startswith("http://127.0.0.1:")
    assert env["MLFLOW_TRACKING_URI"].startswith("http://127.0.0.1:")
    assert env["PREFECT_API_AUTH_STRING"] == "multitask:" + st.secret("prefect_token")
    assert stat.S_IMODE(st.secrets.stat().st_mode) == 0o700
    shown = up.stdout + up.stderr + "".join(p.read_text(errors="replace") for p in st.logs.iterdir())
    for name, value in _secrets(st).items():
        assert stat.S_IMODE((st.secrets / name).stat().st_mode) == 0o600, name
        if name != "mlflow_auth.ini":
            assert value not in shown, f"the secret {name} was printed or logged"


def test_postgres_listens_on_loopback_with_a_password(stack):
    import psycopg2

    st, _, _ = stack
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(st.db_url("postgres").replace(st.secret("pg_password"), "wrong"))
    conn = psycopg2.connect(st.db_url("postgres"))
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW listen_addresses")
            assert cur.fetchone()[0] == "127.0.0.1"
    finally:
        conn.close()


def _status(url: str, authorization: str | None = None, body: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def _basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def test_both_servers_refuse_requests_without_credentials(stack):
    _, _, env = stack
    prefect = (env["PREFECT_API_URL"] + "/flows/filter", b"{}")
    mlflow = (env["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/experiments/search?max_results=1", None)
    good = {prefect: _basic(env["PREFECT_API_AUTH_STRING"]),
            mlflow: _basic(f"{env['MLFLOW_TRACKING_USERNAME']}:{env['MLFLOW_TRACKING_PASSWORD']}")}
    for (url, body), authorization in good.items():
        assert _status(url, None, body) == 401, url
        assert _status(url, _basic("multitask:wrong"), body) == 401, url
        assert _status(url, authorization, body) == 200, url


def _run_deployment(st, name: str, parameters: dict) -> str:
    status, body = st.request("prefect", f"/deployments/name/{name}")
    assert status == 200, body
    status, body = st.request("prefect", f"/deployments/{json.loads(body)['id']}/create_flow_run",
                              {"parameters": parameters})
    assert status == 201, body
    return json.loads(body)["id"]


def _poll(read, timeout: float = 90):
    """`read()` every second until it returns something truthy, or the timeout; its last answer."""
    deadline, found = time.monotonic() + timeout, read()
    while not found and time.monotonic() < deadline:
        time.sleep(1)
        found = read()
    return found


def _state(st, run_id: str) -> dict:
    """The flow run's state as the server has it: `type` (SCHEDULED, RUNNING, COMPLETED, ...), `name`."""
    return json.loads(st.request("prefect", f"/flow_runs/{run_id}")[1])["state"]


def _wait_for(st, run_ids: list[str], timeout: float = 600) -> dict[str, str]:
    """Final state name of each flow run, polled through the server (unfinished ones left out)."""
    final: dict[str, str] = {}

    def all_finished() -> bool:
        for run_id in set(run_ids) - set(final):
            state = _state(st, run_id)
            if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                final[run_id] = state["name"]
        return len(final) == len(run_ids)

    _poll(all_finished, timeout)
    return final


def _run_logs(st, run_ids: list[str]) -> str:
    """The server's log of each flow run in `run_ids` (a failure's own traceback, where the
    worker's log interleaves every run's output)."""
    status, body = st.request("prefect", "/logs/filter", {
        "logs": {"flow_run_id": {"any_": run_ids}}, "sort": "TIMESTAMP_DESC", "limit": 200})
    assert status == 200, body
    return "\n".join(f"{log['flow_run_id'][:8]} {log['message']}" for log in reversed(json.loads(body)))


def _mlflow(st, path: str) -> dict:
    status, body = st.request("mlflow", path)
    assert status == 200, body
    return json.loads(body)


@pytest.fixture(scope="module")
def deployed(stack):
    st, _, env = stack
    run_prefect({**os.environ, **env}, "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml")
    yield st
    # A training that would run for hours, left in flight for down.sh (the `stack` fixture) to end.
    run = _run_deployment(st, "train/train", tiny_parameters(
        'registry.model_name="stack-in-flight"', "train.epochs=100000", "train.early_stopping_patience=null"))
    assert _poll(lambda: _state(st, run)["type"] == "RUNNING", 180), \
        f"the run left for down.sh is {_state(st, run)['type']}"
    assert _poll(lambda: any("prefect.engine" in line for line in _processes_of(st.dir)), 30)


def test_worker_runs_nightly_retrain_and_the_champion_reads_back_through_mlflow(deployed):
    st = deployed
    run = _run_deployment(st, "retrain/retrain-nightly", tiny_parameters(
        'registry.model_name="stack-retrain"', "gate.min_accuracy=0", "gate.min_mean_iou=0"))
    assert _wait_for(st, [run]) == {run: "Completed"}, _run_logs(st, [run])[-8000:]
    assert "Finished in state Completed" in _run_logs(st, [run])  # what a failed run's message shows
    champion = _mlflow(st, "/api/2.0/mlflow/registered-models/alias?name=stack-retrain&alias=champion")
    assert champion["model_version"]["version"] == "1"
    tags = {t["key"]: t["value"] for t in champion["model_version"]["tags"]}
    assert tags["gate.decision"] == "promoted"
    # artifacts went through the tracking server, into DIR, not the worker's workspace
    assert list((st.dir / "mlflow-artifacts").rglob("MLmodel"))
    assert not (st.dir / "workspace" / "mlartifacts").exists()


def test_a_version_reads_back_without_mlflow_as_mlflow_reads_it(stack, monkeypatch):
    """`registry.peek` (a cached run's check) through the server's REST API, with credentials."""
    from multitask.registry import peek, store

    for name, value in stack[2].items():
        monkeypatch.setenv(name, value)
    c = store.client()
    run = c.create_run(c.create_experiment("stack-peek"))
    c.create_registered_model("stack-peek")
    c.create_model_version("stack-peek", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id,
                           tags={peek.TRAIN_FINGERPRINT_TAG: "abc"})
    c.set_registered_model_alias("stack-peek", "champion", "1")
    assert peek.version("stack-peek", "1") == peek._from_mlflow("stack-peek", "1") == peek.Found(
        tags={peek.TRAIN_FINGERPRINT_TAG: "abc"}, aliases=["champion"])
    assert peek.version("stack-peek", "2") is None and peek.version("stack-absent", "1") is None
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
    with pytest.raises(RuntimeError, match="refused reading stack-peek/1: 401"):
        peek.version("stack-peek", "1")


def test_eight_concurrent_runs_all_complete_and_register(deployed):
    st = deployed
    started = time.monotonic()
    runs = [_run_deployment(st, "train/train", tiny_parameters(f'registry.model_name="stack-load-{i}"'))
            for i in range(LOAD_RUNS)]
    final = _wait_for(st, runs)
    print(f"{LOAD_RUNS} concurrent train runs: {sorted(final.values())} in {time.monotonic() - started:.0f} s")
    failed = [run for run, state in final.items() if state != "Completed"]
    assert not failed and len(final) == LOAD_RUNS, _run_logs(st, failed)[-8000:]
    for i in range(LOAD_RUNS):
        versions = _mlflow(st, f"/api/2.0/mlflow/model-versions/search?filter=name%3D%27stack-load-{i}%27")
        assert [v["version"] for v in versions["model_versions"]] == ["1"], i
    logs = "".join(p.read_text(errors="replace") for p in st.logs.iterdir())
    assert "database is locked" not in logs


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another user")
def test_as_root_a_folder_nobody_can_enter_fails_in_one_line(tmp_path):
    # pytest's own tmp folder is mode 700: `nobody` cannot enter it
    up = subprocess.run([str(STACK / "up.sh"), str(tmp_path / "stack")], capture_output=True, text=True,
                        timeout=120, env={**os.environ, "PYTHON": sys.executable})
    assert up.returncode == 1
    assert "cannot reach" in up.stderr and "nobody" in up.stderr
    assert up.stdout == ""
    assert not list((tmp_path / "stack" / "run").iterdir())


def test_an_edited_folder_dataset_triggers_retrain_on_change(deployed):
    """The watch deployment (run by the worker) sees the edit and emits the event; the server's
    trigger creates a run of `retrain-on-change` for that dataset (cancelled here: it would train
    the default model)."""
    from PIL import Image

    from multitask.datasets.export import write_folder

    st = deployed
    folder = write_folder(st.dir / "user-data", 12, "csv")
    spec = f"folder:{folder}"
    first = _run_deployment(st, "watch/watch", {"dataset": spec})
    assert _wait_for(st, [first]) == {first: "Completed"}, (st.logs / "worker.log").read_text()[-5000:]

    image = sorted((folder / "images").iterdir())[0]
    Image.open(image).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(image)
    second = _run_deployment(st, "watch/watch", {"dataset": spec})
    assert _wait_for(st, [second]) == {second: "Completed"}, (st.logs / "worker.log").read_text()[-5000:]

    # the server stores events and evaluates triggers a few seconds after the event is sent
    events = _poll(lambda: json.loads(st.request("prefect", "/events/filter", {
        "filter": {"event": {"name": ["multitask.dataset.changed"]}, "resource": {"id": [spec]}}})[1])["events"])
    assert len(events) == 1, "no multitask.dataset.changed event for the edited dataset"
    assert events[0]["payload"]["dataset"] == spec and events[0]["payload"]["old"] != events[0]["payload"]["new"]

    deployment = json.loads(st.request("prefect", "/deployments/name/retrain/retrain-on-change")[1])["id"]
    triggered = _poll(lambda: json.loads(st.request("prefect", "/flow_runs/filter", {
        "flow_runs": {"deployment_id": {"any_": [deployment]}}})[1]))
    assert len(triggered) == 1, "the trigger created no run of retrain-on-change"
    assert triggered[0]["parameters"]["config"]["data"]["dataset"] == spec
    st.request("prefect", f"/flow_runs/{triggered[0]['id']}/set_state",
               {"state": {"type": "CANCELLING"}, "force": True})
