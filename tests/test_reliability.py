"""Reliability: faults, divergence, stale caches, safe loading, storage (crashes and races: test_crashes.py).

Each test would fail if its promise in docs/reliability.md broke.
"""

import errno
import os
import sqlite3
import threading
from pathlib import Path

import keras
import mlflow
import pytest
from typer.testing import CliRunner

from cli import app
from flows.data import data_flow
from flows.train import train_flow
from multitask import atomic, pipeline, registry, workspace
from multitask.datasets.export import write_folder
from multitask.errors import UserError, WorkspaceError
from tasks import data as data_tasks
from tasks import register as register_tasks

from helpers import DATA_STEPS, TINY, no_retry_waits, tiny_config, versions


@pytest.fixture(scope="module")
def baseline(prefect_server, module_workspace):
    return train_flow(config=tiny_config())


def test_diverging_run_fails_and_registers_nothing(baseline):
    before = versions()
    champion = registry.client().get_model_version_by_alias("multitask-shapes", "champion").version
    with pytest.raises(RuntimeError, match="NaN|Inf"):
        train_flow(config=tiny_config("train.learning_rate=1e12", "train.epochs=2"))
    assert versions() == before
    assert registry.client().get_model_version_by_alias("multitask-shapes", "champion").version == champion


def _flaky(monkeypatch, module, attribute, exc, times):
    calls = []
    real = getattr(module, attribute)

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) <= times:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(module, attribute, flaky)
    return calls


def test_transient_faults_in_snapshot_and_registry_are_retried(baseline, monkeypatch):
    no_retry_waits(monkeypatch, data_tasks.build_snapshot, register_tasks.register_model)
    snapshot_calls = _flaky(monkeypatch, pipeline, "build_snapshot", ConnectionError("nfs went away"), 2)
    register_calls = _flaky(monkeypatch, register_tasks.registry, "register",
                            sqlite3.OperationalError("database is locked"), 1)
    result = train_flow(config=tiny_config("data.seed=11"))
    assert len(snapshot_calls) == 3 and len(register_calls) == 2
    assert result["steps"]["register_model"] == "Completed"


def test_failure_between_model_and_aliases_is_repaired_by_a_rerun(baseline, monkeypatch):
    before = versions()
    from multitask.registry import runs

    _flaky(monkeypatch, runs, "ensure_aliases", RuntimeError("died before moving aliases"), 99)
    with pytest.raises(RuntimeError, match="died before moving aliases"):
        train_flow(config=tiny_config("train.seed=5"))
    orphan = str(max(int(v) for v in versions()))
    assert len(versions()) == len(before) + 1
    assert registry.client().get_model_version("multitask-shapes", orphan).aliases == []
    monkeypatch.undo()

    repaired = train_flow(config=tiny_config("train.seed=5"))
    assert repaired["version"] == orphan and "challenger" in repaired["aliases"]
    assert len(versions()) == len(before) + 1
    assert registry.load_model("multitask-shapes@challenger").output_names


def test_a_field_the_step_does_not_read_is_a_hit(baseline):
    changed = train_flow(config=tiny_config("evaluate.grid_size=3"))
    steps = changed["steps"]
    assert [steps[s] for s in ("prepare_dataset", "build_snapshot", "build_model", "train_model")] == ["Cached"] * 4
    assert steps["evaluate_model"] == "Completed"


def test_records_changed_in_place_are_rebuilt(baseline):
    config = tiny_config("data.seed=8")  # its own records: the baseline's stay cached for the other tests
    assert data_flow(config=config)["steps"]["prepare_dataset"] == "Completed"
    records = Path(os.environ["MULTITASK_HOME"], "tfds", "shapes", "n40-10-10-s8", "1.0.0")
    shard = next(records.glob("shapes-train.tfrecord-*"))
    shard.write_bytes(b"garbage")
    again = data_flow(config=config)
    assert again["steps"]["prepare_dataset"] == "Completed"
    assert shard.read_bytes() != b"garbage"  # regenerated, not reused


def test_folder_data_edited_in_place_is_a_miss(prefect_server, workspace, tmp_path):
    from PIL import Image

    folder = write_folder(tmp_path / "mine", 40, "csv")
    config = tiny_config(f'data.dataset="folder:{folder}"')
    assert data_flow(config=config)["steps"]["prepare_dataset"] == "Completed"
    assert data_flow(config=config)["steps"] == dict.fromkeys(DATA_STEPS, "Cached")
    edited = folder / "images/000003.png"
    Image.new("RGB", Image.open(edited).size, (200, 10, 10)).save(edited)  # same size, new pixels
    assert data_flow(config=config)["steps"] == dict.fromkeys(DATA_STEPS, "Completed")


def test_a_model_holding_python_code_is_refused(prefect_server, workspace):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    from multitask.registry import store

    experiment = store.experiment_id(registry.client(), "sneaky")  # artifacts in the workspace, not ./mlruns
    with mlflow.start_run(experiment_id=experiment):
        # Requirements given: MLflow's inference loads the model in a subprocess (8 s of the test's 9).
        mlflow.keras.log_model(model, name="model", registered_model_name="sneaky", pip_requirements=["keras"])
    registry.client().set_registered_model_alias("sneaky", "champion", "1")
    with pytest.raises(UserError, match="refused to load 'sneaky@champion'.*Lambda"):
        registry.load_model("sneaky@champion")


@pytest.mark.parametrize("reference", ["../../etc@champion", "ok@bad alias!", "name", "a/b/c", "x/latest"])
def test_model_references_are_validated(reference):
    with pytest.raises(UserError):
        registry.model_uri(reference)


def test_unwritable_workspace_is_one_clear_line(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MULTITASK_HOME", str(blocker / "workspace"))
    result = CliRunner().invoke(app, ["train", *(a for item in TINY for a in ("--set", item))])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: workspace {blocker / 'workspace'} is not writable: Not a directory"


def test_runs_checking_one_workspace_at_once_all_find_it_writable(tmp_path):
    """Runs started together check the workspace at the same moment (docs/reliability.md)."""
    failures = []

    def check():
        for _ in range(200):
            try:
                workspace.ensure(tmp_path)
            except WorkspaceError as exc:
                failures.append(str(exc))

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and list(tmp_path.iterdir()) == []


def test_disk_full_is_one_clear_line(baseline, monkeypatch):
    from multitask import atomic

    def full(path, figure):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(atomic, "write_png", full)
    args = ["train", *(a for item in [*TINY, "evaluate.grid_size=1"] for a in ("--set", item))]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: No space left on device while writing ") and "curves.png" in last


def test_each_workspace_keeps_its_own_registry(prefect_server, tmp_path, monkeypatch):
    """MLflow exports its tracking URI to the environment; switching workspaces must not leak."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MULTITASK_HOME", str(tmp_path / "one"))
    registry.client()
    monkeypatch.setenv("MULTITASK_HOME", str(tmp_path / "two"))
    assert registry.client()._tracking_client.tracking_uri == f"sqlite:///{tmp_path / 'two' / 'mlflow.db'}"
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_a_registry_hiccup_while_checking_the_cache_keeps_the_record(baseline, monkeypatch):
    from tasks import caching

    calls = []

    def locked(version):
        calls.append(version)
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(caching, "CHECK_WAITS", (0.0, 0.0))
    monkeypatch.setattr(registry, "version_matches", locked)
    before = versions()
    again = train_flow(config=tiny_config())
    assert len(calls) == 3  # asked again through the hiccup, then kept
    assert again["steps"]["register_model"] == "Cached" and versions() == before


def test_no_login_name_is_needed_to_import_or_promote(baseline, monkeypatch):
    import getpass

    def no_passwd_entry():
        raise KeyError("getpwuid(): uid not found: 12345")

    monkeypatch.setattr(getpass, "getuser", no_passwd_entry)
    monkeypatch.setenv("USER", "container-user")
    result = CliRunner().invoke(app, ["models", "promote", "multitask-shapes/1", "--reason", "test"])
    assert result.exit_code == 0, result.output
    assert registry.show("multitask-shapes/1")["tags"]["promoted_by"] == "container-user"


def _recording_syncs(monkeypatch) -> list[tuple[str, str]]:
    """Record, in order, each fsync (the path its descriptor names) and each rename or link."""
    events: list[tuple[str, str]] = []
    fsync, replace, link = os.fsync, os.replace, os.link

    def recorded_fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return fsync(fd)

    def recorded(kind, call):
        def run(src, dst, *args, **kwargs):
            events.append((kind, str(dst)))
            return call(src, dst, *args, **kwargs)
        return run

    monkeypatch.setattr(os, "fsync", recorded_fsync)
    monkeypatch.setattr(os, "replace", recorded("replace", replace))
    monkeypatch.setattr(os, "link", recorded("link", link))
    return events


@pytest.mark.parametrize("write", [
    lambda path: atomic.write_json(path, {"a": 1}),
    lambda path: atomic.create_json(path, {"a": 1}),
])
def test_atomic_writes_reach_the_disk_before_and_after_their_rename(tmp_path, monkeypatch, write):
    """Without an fsync before the rename a power loss can leave the new name on an empty file;
    without one of the folder after, the rename itself can be lost."""
    events = _recording_syncs(monkeypatch)
    write(tmp_path / "state.json")
    [(kind, dst)] = [(k, d) for k, d in events if k != "fsync"]
    at = events.index((kind, dst))
    assert dst == str(tmp_path / "state.json")
    assert any(k == "fsync" and Path(p).parent == tmp_path and Path(p).name.startswith(".state.tmp-")
               for k, p in events[:at]), events
    assert ("fsync", str(tmp_path)) in events[at + 1:], events


def test_a_replaced_folder_is_on_disk_before_its_rename(tmp_path, monkeypatch):
    events = _recording_syncs(monkeypatch)
    with atomic.replace_dir(tmp_path / "out") as out:
        (out / "inner").mkdir()
        (out / "inner" / "model.bin").write_bytes(b"weights")
    at = events.index(("replace", str(tmp_path / "out")))
    synced = {Path(p).name for k, p in events[:at] if k == "fsync"}
    assert {"model.bin", "inner"} <= synced, events
    assert ("fsync", str(tmp_path)) in events[at + 1:], events
