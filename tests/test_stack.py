"""The team stack (deployments/stack/up.sh): PostgreSQL, a Prefect server and an MLflow tracking
server on it, and a process worker, all real, on 127.0.0.1, started once for this module.

The flow runs are the worker's: deployed with `prefect deploy --all`, run from the server,
registered through the MLflow server and read back through its REST API.
"""

from __future__ import annotations

import base64
import datetime
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

from helpers import run_prefect, stack_module, tiny_parameters

pytestmark = [pytest.mark.slow, pytest.mark.server, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / "deployments" / "stack"
LOAD_RUNS = 8
STACK_MODULE = stack_module()


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
        yield STACK_MODULE.Stack(root), up, _exports(up.stdout)
    finally:
        subprocess.run([str(STACK / "down.sh"), str(root)], timeout=180, env={**os.environ, **python})
        left = _processes_of(root)
        shutil.rmtree(root, ignore_errors=True)
    # down.sh stops the flow runs in flight too (`deployed` leaves one); Prefect starts each in a
    # session of its own.
    assert not left, f"still running after down.sh: {left}"


def _exports_of(st) -> dict[str, str]:
    """What `eval "$(cat DIR/env)"` sets: a client of the stack."""
    return _exports((st.dir / "env").read_text())


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
                        "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MULTITASK_TUNE_STORAGE"}
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


def test_tune_studies_live_in_the_stacks_postgres(stack, monkeypatch):
    """What `up.sh` exports points `multitask tune` at the stack's database: every client shares a study."""
    import optuna

    from multitask import tuning

    _, _, env = stack
    monkeypatch.setenv(tuning.STORAGE_ENV, env["MULTITASK_TUNE_STORAGE"])
    study = tuning.open_study("tune-stack-check", seed=0)
    study.tell(study.ask(), 0.5)
    assert env["MULTITASK_TUNE_STORAGE"].startswith("postgresql+psycopg2://multitask:")
    again = optuna.load_study(study_name="tune-stack-check", storage=tuning.storage())
    assert [trial.value for trial in again.get_trials()] == [0.5]


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


def _finished(st, run_ids) -> dict[str, str]:
    """Final state name of each flow run in `run_ids` that has finished."""
    states = {run_id: _state(st, run_id) for run_id in run_ids}
    return {run_id: state["name"] for run_id, state in states.items()
            if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")}


def _wait_for(st, run_ids: list[str], timeout: float = 600) -> dict[str, str]:
    """Final state name of each flow run, polled through the server (unfinished ones left out)."""
    final: dict[str, str] = {}

    def all_finished() -> bool:
        final.update(_finished(st, set(run_ids) - set(final)))
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


def _start_worker(st, queue: str) -> subprocess.Popen:
    """A process worker of its own, as on another machine: its own MULTITASK_HOME and PREFECT_HOME,
    taking runs from the pool's queue `queue` only."""
    args, env = st.command("worker")
    env |= {"MULTITASK_HOME": str(st.dir / queue / "workspace"), "PREFECT_HOME": str(st.dir / queue / "prefect")}
    status, body = st.request("prefect", f"/work_pools/{STACK_MODULE.POOL}/queues", {"name": queue})
    assert status in (201, 409), body
    with open(st.logs / f"{queue}.log", "ab") as log:
        return subprocess.Popen([*args, "--work-queue", queue, "--name", queue], env=env, cwd=ROOT,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _online_workers(st) -> set[str]:
    status, body = st.request("prefect", f"/work_pools/{STACK_MODULE.POOL}/workers/filter", {})
    return {w["name"] for w in json.loads(body) if w.get("status") == "ONLINE"} if status == 200 else set()


def _run_on(st, deployment: str, queue: str, *sets: str) -> str:
    parameters = tiny_parameters(*sets)
    status, body = st.request("prefect", f"/deployments/name/{deployment}")
    status, body = st.request("prefect", f"/deployments/{json.loads(body)['id']}/create_flow_run",
                              {"parameters": parameters, "work_queue_name": queue})
    assert status == 201, body
    return json.loads(body)["id"]


def _version_tags(st, model: str) -> dict[str, dict[str, str]]:
    found = _mlflow(st, f"/api/2.0/mlflow/model-versions/search?filter=name%3D%27{model}%27")["model_versions"]
    return {v["version"]: {t["key"]: t["value"] for t in v.get("tags", [])} for v in found}


def _champion(st, model: str) -> str:
    return _mlflow(st, f"/api/2.0/mlflow/registered-models/alias?name={model}&alias=champion")["model_version"][
        "version"]


@pytest.fixture
def team(deployed):
    """Two workers with workspaces of their own (queues team-a and team-b) in place of the
    stack's worker, which takes runs from every queue; the stack's worker is back afterwards."""
    st = deployed
    st.stop("worker")
    workers: dict[str, subprocess.Popen] = {}
    try:
        for queue in ("team-a", "team-b"):
            workers[queue] = _start_worker(st, queue)
        assert _poll(lambda: _online_workers(st) >= set(workers), 120), (st.logs / "team-a.log").read_text()[-3000:]
        yield st
    finally:
        for proc in workers.values():
            STACK_MODULE._end([proc.pid, *STACK_MODULE._children(proc.pid)], reap=proc.poll)
        st.start("worker")
        st.wait("worker")


# `multitask models promote`, its imports done before the arguments arrive (one JSON line on stdin),
# so that it promotes within a second of being told to, while a retrain is between two steps.
PROMOTER = ("import json, sys; from cli.common import quiet_environment; quiet_environment(); "
            "import multitask.registry.versions, multitask.registry.loading, tasks.exclusive; from cli import app; "
            "app(json.loads(sys.stdin.readline()))")


def _task_runs(st, run_id: str, task: str) -> list[dict]:
    """The flow run's task runs whose name starts with `task`, oldest first."""
    status, body = st.request("prefect", "/task_runs/filter", {
        "flow_runs": {"id": {"any_": [run_id]}}, "task_runs": {"name": {"like_": f"{task}%"}},
        "sort": "EXPECTED_START_TIME_ASC"})
    assert status == 200, body
    return json.loads(body)


def _task_started(st, run_id: str, task: str) -> bool:
    return any(t["state"]["type"] in ("RUNNING", "COMPLETED") for t in _task_runs(st, run_id, task))


def _instant(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_two_workers_retraining_one_model_promote_only_against_the_current_champion(team):
    """Two retrains of one model with different seeds, started at once on two workers, and a
    person promoting by hand while the second trains: the retrains take turns, the manual promotion
    is not undone, each gate judges against the champion of its moment, every version is there."""
    st, model = team, "stack-team"
    name = f'registry.model_name="{model}"'
    first = _run_on(st, "train/train", "team-a", name)
    assert _wait_for(st, [first]) == {first: "Completed"}, _run_logs(st, [first])[-8000:]
    assert _champion(st, model) == "1"

    promoter = subprocess.Popen([sys.executable, "-c", PROMOTER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                env={**os.environ, **_exports_of(st), "MULTITASK_HOME": str(st.dir / "cli")})
    try:
        gate = ("gate.min_accuracy=0", "gate.min_mean_iou=0", "train.epochs=3")
        retrains = [_run_on(st, "retrain/retrain-nightly", "team-a", name, "train.seed=1", *gate),
                    _run_on(st, "retrain/retrain-nightly", "team-b", name, "train.seed=2", *gate)]
        final = _poll(lambda: _finished(st, retrains), 600)
        assert len(final) == 1 and set(final.values()) == {"Completed"}, _run_logs(st, retrains)[-8000:]
        second = next(run for run in retrains if run not in final)
        after_first = _champion(st, model)  # v2 if the first retrain's challenger won, else still v1
        by_hand = "1" if after_first == "2" else "2"
        # the second has read the champion and trains: a promotion now moves it under its feet
        assert _poll(lambda: _task_started(st, second, "train_model"), 300), _run_logs(st, [second])[-8000:]
        out, err = promoter.communicate(json.dumps(["models", "promote", f"{model}/{by_hand}", "--reason",
                                                    "rollback"]) + "\n", timeout=120)
    finally:
        promoter.kill()
    assert promoter.returncode == 0, err
    assert _wait_for(st, [second]) == {second: "Completed"}, _run_logs(st, [second])[-8000:]

    tags = _version_tags(st, model)
    assert sorted(tags, key=int) == ["1", "2", "3"]
    assert tags["2"]["gate.champion_version"] == "1"  # the first retrain: judged against v1, untouched
    assert tags[by_hand]["promotion"] == "manual"
    # A gate decides under the promotion lock, so the hand promotion came wholly before the second
    # retrain's first gate ended, or after it. The promoter is warmed up so that nearly always it is
    # before: the second retrain then judges again against the champion moved under its feet.
    first_gate_end = _instant(_task_runs(st, second, "apply_gate")[0]["end_time"])
    if _instant(tags[by_hand]["champion.since"]) < first_gate_end:
        assert tags[by_hand]["champion.previous"] == after_first
        assert f"the champion moved from v{after_first} to v{by_hand} during this run" in _run_logs(st, [second])
        assert tags["3"]["gate.champion_version"] == by_hand
        promoted_third = tags["3"]["gate.decision"] == "promoted"
        assert _champion(st, model) == ("3" if promoted_third else by_hand)
        assert not promoted_third or tags["3"]["champion.previous"] == by_hand
    else:  # judged against the champion of its moment; the later hand promotion replaced whatever it left
        assert tags["3"]["gate.champion_version"] == after_first
        left = "3" if tags["3"]["gate.decision"] == "promoted" else after_first
        assert tags[by_hand]["champion.previous"] == left and _champion(st, model) == by_hand
    for queue in ("team-a", "team-b"):  # each worker built the dataset in its own workspace
        assert list((st.dir / queue / "workspace").rglob("dataset_info.json")), queue


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
