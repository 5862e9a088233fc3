"""Crashes and races: a training killed mid-run resumes; runs started together share or split work.

Both promises are in docs/reliability.md. The tests run real subprocesses against the test
harness's Prefect server.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from flows.train import train_flow
from multitask import registry
from multitask.train import read_history

from helpers import TINY, tiny_config, versions

CHILD = """
import json, sys, time
from pathlib import Path
import keras
from multitask import train as train_module
from multitask.config_loader import load_config

sets, stop_after, marker = json.loads(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])

class HangAfterBackup(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == stop_after:
            marker.write_text(str(epoch + 1))
            time.sleep(600)  # killed here, after BackupAndRestore saved this epoch

real = train_module._callbacks
train_module._callbacks = lambda *args: [*real(*args), HangAfterBackup()]
from flows.train import train_flow
train_flow(config=load_config("default", sets=sets))
"""


def _child_env(home: Path) -> dict:
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "MULTITASK_HOME": str(home), "PREFECT_API_URL": PREFECT_API_URL.value()}


def _wait_until(condition, children: list[subprocess.Popen], seconds: float = 180) -> None:
    """Poll `condition` until it holds, every child has exited, or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while not condition() and any(child.poll() is None for child in children) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_sigkill_mid_training_then_rerun_resumes(prefect_server, workspace, tmp_path):
    sets = [*TINY, "train.epochs=4"]
    script, marker = tmp_path / "child.py", tmp_path / "after-epoch"
    script.write_text(CHILD)
    child = subprocess.Popen([sys.executable, str(script), json.dumps(sets), "2", str(marker)],
                             env=_child_env(workspace), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_until(marker.exists, [child])
    assert marker.exists(), "the child never finished epoch 2"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    run_dir = next((workspace / "steps" / "train_model").iterdir())
    first = json.loads((run_dir / "epochs.json").read_text())
    assert sorted(first) == ["1", "2"] and (run_dir / "backup").is_dir()
    assert list((workspace / "locks").glob("*.lock")), "the killed run should have left its lock"
    (run_dir / ".model.keras.tmp").write_bytes(b"half a model")  # a half-written file

    result = train_flow(config=tiny_config("train.epochs=4"))
    assert result["steps"]["train_model"] == "Completed" and result["run_dir"] == str(run_dir)
    history = read_history(run_dir / "history.json")
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert [row["train_seconds"] for row in history[:2]] == [first["1"]["train_seconds"], first["2"]["train_seconds"]]
    assert versions() == ["1"] and registry.load_model("multitask-shapes@champion") is not None


def test_concurrent_runs_same_config_share_one_training_others_get_their_own(prefect_server, workspace):
    """Two CLI processes with one config, and a run with another in this process once theirs have begun
    (a third CLI process would cost 20-30 s of CPU, most of it importing, and add nothing)."""
    args = [sys.executable, "-m", "cli", "train", "--json", *(a for item in TINY for a in ("--set", item))]
    runs = [subprocess.Popen(args, env=_child_env(workspace), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    _wait_until((workspace / "locks").is_dir, runs)
    assert (workspace / "locks").is_dir(), "neither CLI run took a step's lock"
    other = train_flow(config=tiny_config("train.learning_rate=0.003"))
    outputs = [run.communicate(timeout=400) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in outputs]
    same_a, same_b = (json.loads(out.strip().splitlines()[-1]) for out, _ in outputs)
    assert same_a["version"] == same_b["version"] != other["version"]
    assert sorted([same_a["steps"]["train_model"], same_b["steps"]["train_model"]]) == ["Cached", "Completed"]
    assert other["steps"]["train_model"] == "Completed"
    assert versions() == sorted({same_a["version"], other["version"]}, key=int)
    for version in versions():
        assert registry.load_model(f"multitask-shapes/{version}").output_names


LAZY_IMPORT_WINDOWS = """
import json
import tasks  # what a command, a worker's flow-run process or a Dask worker loads before its flow starts
from etils import epy

opened = []
real = epy.lazy_imports

def recording(*args, **kwargs):
    opened.append(1)
    return real(*args, **kwargs)

epy.lazy_imports = recording
# what the library's data, prediction and registry modules import mid-flow, Prefect's threads running
import tensorflow_datasets
from tensorflow_datasets.core import dataset_builder
dataset_builder.dataset_metadata.DatasetMetadata  # what a catalog builder reads when it starts
print(json.dumps(len(opened)))
"""


def test_no_import_swaps_builtins_import_once_a_flow_could_be_running():
    """TensorFlow Datasets replaces `builtins.__import__` process-wide while it imports: an import in
    a Prefect thread in that window fails. After `tasks` loads, no such window opens again."""
    done = subprocess.run([sys.executable, "-c", LAZY_IMPORT_WINDOWS], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == 0
