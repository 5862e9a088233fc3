"""Shared fixtures: Prefect's test harness (once per session) and a workspace per test module.

Environment variables are set before Prefect or TensorFlow is imported, so every run of the
suite uses temporary homes and never touches the user's own Prefect profile.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
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

from multitask import atomic  # noqa: E402
from multitask.config import RunConfig  # noqa: E402
from multitask.config_loader import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DURATIONS = ROOT / "tests" / "durations.json"  # seconds per test file, from `pytest --record-durations`
DATA_STEPS = ("prepare_dataset", "build_snapshot", "validate_dataset")  # the data flow's steps, in order

# Tens of 32x32 images, one epoch, and the starting point's 7-layer model: most flow tests are
# about orchestration, and the default model trains slower (4-5 s against 2-3 s per `TINY` training
# with eager steps, 11 s against 4-5 s compiled). tests/test_train_flow.py and the library's
# training tests use the default model.
TINY = [
    "data.train_size=40", "data.validation_size=10", "data.test_size=10", "data.image_size=32",
    "train.epochs=1", "train.batch_size=16", "evaluate.grid_size=2", 'model.preset="seed"',
]
DEFAULT_MODEL = 'model.preset="default"'



def versions(name: str = "multitask-shapes") -> list[str]:
    """The registered versions of `name` in the current workspace, oldest first."""
    from multitask import registry

    return sorted((row["version"] for row in registry.list_models() if row["name"] == name), key=int)


def tiny_parameters(*sets: str) -> dict:
    """`TINY` and `sets` (`section.key=JSON`, as `--set` takes them) as a flow's `config` parameter,
    for deployment runs."""
    config: dict = {}
    for item in (*TINY, *sets):
        key, value = item.split("=", 1)
        section, field = key.split(".")
        config.setdefault(section, {})[field] = json.loads(value)
    return {"config": config}


def run_prefect(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """A `prefect` command as a user would type it, from the repository root; must succeed.

    `PWD` too, as a shell sets it: prefect.yaml's pull step runs flows in `{{ $PWD }}`, and a child's
    `cwd` does not change the variable it inherits (pytest started from another folder deployed that one)."""
    done = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=ROOT, env={**env, "PWD": str(ROOT)},
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def stack_module():
    """deployments/stack/stack.py, a script rather than a package, loaded as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("stack", ROOT / "deployments" / "stack" / "stack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def no_retry_waits(monkeypatch, *steps) -> None:
    """`steps` (Prefect tasks) retry at once instead of after about 2, 4, 8 s: tests count attempts."""
    for step in steps:
        monkeypatch.setattr(step, "retry_delay_seconds", 0)


def tiny_config(*sets: str, preset: str = "default") -> RunConfig:
    """A config that trains in seconds (`TINY`); `sets` come after it, so they can override it."""
    return load_config(preset, sets=[*TINY, *sets])


def pytest_collection_modifyitems(items):
    """A test that runs a flow (it needs the Prefect server) or trains on a snapshot (`inputs`,
    `seed_inputs`) is `slow`: `make test-fast` leaves it out. Others that train mark themselves.

    Then the files are put heaviest first (`_heaviest_files_first`)."""
    for item in items:
        if {"prefect_server", "inputs", "seed_inputs"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    _heaviest_files_first(items)


def _heaviest_files_first(items) -> None:
    """Order the files by the seconds they took when last recorded (`DURATIONS`), longest first; a
    file not recorded yet goes first, as it may be long.

    `--dist loadfile` hands whole files to the workers in this order (the Makefile passes
    `--no-loadscope-reorder`, or xdist would order them by test count alone). A long file handed
    out last keeps one worker busy while the other has nothing left: started first, it overlaps
    with the short ones. Within a file the order stays as written (the sort is stable). Counting
    tests and markers instead put a 90-s file of four tests last.
    """
    seconds = _recorded()
    items.sort(key=lambda item: -seconds.get(_file_of(item), math.inf))


def _recorded() -> dict[str, float]:
    return json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}


def _file_of(item) -> str:
    return item.nodeid.split("::", 1)[0]


def pytest_addoption(parser):
    parser.addoption("--record-durations", action="store_true",
                     help=f"write each file's seconds (setup, call and teardown of its tests) into {DURATIONS.name}; "
                          "run whole files (no -k), or their partial times are written")


def pytest_configure(config):
    if config.getoption("--record-durations") and not hasattr(config, "workerinput"):  # xdist's controller
        config.pluginmanager.register(_FileSeconds(), "file-seconds")


class _FileSeconds:
    """Adds up each file's test seconds (xdist's controller sees every worker's reports) and
    writes them into `DURATIONS`, keeping the files that did not run (`-m "not server"`)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logreport(self, report) -> None:
        file = _file_of(report)
        self.seconds[file] = self.seconds.get(file, 0.0) + report.duration

    def pytest_sessionfinish(self) -> None:
        recorded = _recorded()
        recorded.update({file: round(total, 1) for file, total in self.seconds.items()})
        atomic.write_json(DURATIONS, recorded)


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


def training_inputs(cfg: RunConfig, home: Path):
    """A snapshot of `cfg.data` and `cfg.model`'s initial model, saved under `home`, as the
    library's `train` takes them (`ModelRef`, `SnapshotRef`)."""
    from multitask.datasets import catalog
    from multitask.model import save_initial
    from multitask.pipeline import build_snapshot

    snapshot = build_snapshot(catalog.prepare(cfg.data), cfg.data, home / "snapshot")
    return save_initial(cfg.model, len(snapshot.class_names), snapshot.image_size, home / "initial.keras"), snapshot


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
