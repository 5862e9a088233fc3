"""Shared fixtures: Prefect's test harness (once per session) and a workspace per test module.

Environment variables are set before Prefect or TensorFlow is imported, so every run of the
suite uses temporary homes and never touches the user's own Prefect profile.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="multitask-tests-"))
os.environ["PREFECT_HOME"] = str(_HOME / "prefect")
os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(_HOME / "prefect" / "storage")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_TO_API_ENABLED"] = "false"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
# As the CLI sets it, so Prefect never reconfigures its logging inside a CliRunner (whose streams close).
os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_STREAM"] = "ext://sys.stdout"
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("PREFECT_API_URL", None)

import prefect.main  # noqa: E402,F401  (sets up its logging on the real streams, before any CliRunner swaps them)
import pytest  # noqa: E402

from multitask.config import RunConfig  # noqa: E402

from helpers import DEFAULT_MODEL, tiny_config, training_inputs  # noqa: E402

pytest_plugins = ["ordering"]


def pytest_collection_modifyitems(items):
    """A test that runs a flow (it needs the Prefect server) or trains on a snapshot (`inputs`,
    `seed_inputs`) is `slow`: `make test-fast` leaves it out. Others that train mark themselves.
    (tests/ordering.py then puts the files heaviest first.)"""
    for item in items:
        if {"prefect_server", "inputs", "seed_inputs"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _eager_steps():
    """Keras' train, test and predict steps run eagerly in the test processes: a `TINY` training
    of the default model took 11 s compiled, most of it tracing, and 4-5 s eager, with the same
    numbers. Tests marked `graph` compile the steps, as the product does
    (`_graph_when_marked`); so does every test that trains in a process of its own (the CLI as a
    subprocess, Dask workers, the team stack's worker, the crash and two-device tests).

    Session-wide, so module fixtures that train run eagerly too; TensorFlow is imported here, in
    the workers, not when xdist's controller reads this file."""
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)


@pytest.fixture(autouse=True)
def _graph_when_marked(request, _eager_steps):
    """A test marked `graph` runs Keras' steps as compiled graphs; the others run them eagerly."""
    import tensorflow as tf

    tf.config.run_functions_eagerly(request.node.get_closest_marker("graph") is None)
    yield
    tf.config.run_functions_eagerly(True)


@pytest.fixture(scope="session")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An empty MLflow store, migrated once: a new store's schema migrations take 1-2 s each."""
    from multitask.registry import store

    home = tmp_path_factory.mktemp("empty-store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MULTITASK_HOME", str(home))
        store.client()
    return home / "mlflow.db"


def _new_workspace(home: Path, empty_store: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(empty_store, home / "mlflow.db")
    return home


@pytest.fixture
def workspace(tmp_path, monkeypatch, empty_store) -> Path:
    home = _new_workspace(tmp_path / "workspace", empty_store)
    monkeypatch.setenv("MULTITASK_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def module_workspace(tmp_path_factory, empty_store) -> Path:
    """One workspace shared by a module's tests, so they can build on a cached baseline."""
    home = _new_workspace(tmp_path_factory.mktemp("workspace"), empty_store)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MULTITASK_HOME", str(home))
        yield home


def _module_inputs(tmp_path_factory, cfg: RunConfig):
    home = tmp_path_factory.mktemp("ws")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MULTITASK_HOME", str(home))
        yield (*training_inputs(cfg, home), cfg)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny snapshot and the default preset's initial model, for the library's `train`."""
    yield from _module_inputs(tmp_path_factory, tiny_config(DEFAULT_MODEL))


@pytest.fixture(scope="module")
def seed_inputs(tmp_path_factory):
    """As `inputs`, with the small `seed` model, where the model does not matter (its graph traces faster)."""
    yield from _module_inputs(tmp_path_factory, tiny_config())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def dask_cluster(prefect_server, tmp_path):
    """`tcp://127.0.0.1:PORT` of a scheduler with two one-thread workers; all stopped afterwards."""
    from distributed import Client
    from prefect.settings import PREFECT_API_URL

    address = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "MULTITASK_HOME": str(tmp_path / "dask-ws"), "PREFECT_API_URL": PREFECT_API_URL.value()}
    logs = open(tmp_path / "dask.log", "w")  # noqa: SIM115 (closed below, after the processes)

    def start(module: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", f"distributed.cli.{module}", *args, "--no-dashboard"],
                                env=env, stdout=logs, stderr=subprocess.STDOUT)

    processes = [start("dask_scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1])]
    try:
        time.sleep(1)
        processes += [start("dask_worker", address, "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1")
                      for _ in range(2)]
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield address, tmp_path / "dask-ws"
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        logs.close()
