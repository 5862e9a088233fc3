"""validate_dataset's library half, and the `multitask data` commands."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from prefect._internal.concurrency.services import _QueueServiceBase
from typer.testing import CliRunner

from cli import app
from multitask.datasets.export import write_folder
from multitask.errors import DataError
from multitask.records import SnapshotRef
from multitask.validate import validate


def _snapshot(tmp_path, boxes_by_split, labels_by_split, classes=("a", "b", "c")):
    for split, boxes in boxes_by_split.items():
        labels = labels_by_split[split]
        tf.data.Dataset.from_tensor_slices({
            "image": np.zeros((len(boxes), 8, 8, 3), np.uint8), "label": np.array(labels, np.int32),
            "box": np.array(boxes, np.float32), "filename": [f"{split}-{i}.png".encode() for i in range(len(boxes))],
        }).save(str(tmp_path / "snap" / split))
    return SnapshotRef(path=str(tmp_path / "snap"), class_names=list(classes), splits={}, image_size=8,
                       fingerprint="-", dropped={"test": 2})


GOOD = [0.1, 0.1, 0.5, 0.5]


def test_clean_data_passes_with_warnings_for_missing_classes(tmp_path):
    snap = _snapshot(tmp_path, {"train": [GOOD] * 3, "validation": [GOOD] * 2, "test": [GOOD] * 2},
                     {"train": [0, 1, 2], "validation": [0, 1], "test": [0, 0]})
    report = validate(snap, tmp_path / "out")
    assert report.examples == {"train": 3, "validation": 2, "test": 2}
    assert any("missing from validation: c" in w for w in report.warnings)
    assert any("missing from test: b, c" in w for w in report.warnings)
    assert any("2 example(s) dropped from test" in w for w in report.warnings)
    written = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert written["ok"] and written["splits"]["train"]["class_counts"] == {"a": 1, "b": 1, "c": 1}


def test_bad_boxes_labels_and_empty_splits_fail_with_counts_and_first_rows(tmp_path):
    bad_box, flat_box = [0.5, 0.1, 0.4, 0.5], [0.1, 0.1, 0.1, 0.5]
    snap = _snapshot(tmp_path, {"train": [GOOD, bad_box, flat_box, GOOD], "validation": [GOOD], "test": []},
                     {"train": [0, 1, 2, 7], "validation": [0], "test": []})
    with pytest.raises(DataError) as failure:
        validate(snap, tmp_path / "out")
    message = str(failure.value)
    assert "2 invalid boxes in train, first: train train-1.png: box [0.5, 0.1, 0.4, 0.5]; train train-2.png" in message
    assert "1 labels out of range in train, first: train train-3.png: label 7 outside 0..2" in message
    assert "split test is empty" in message
    assert not json.loads((tmp_path / "out" / "validation.json").read_text())["ok"]


def test_data_commands(prefect_server, workspace, tmp_path):
    folder = write_folder(tmp_path / "mine", 40, "csv")
    runner = CliRunner()
    built = runner.invoke(app, ["data", "build", f"folder:{folder}", "--json"])
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout.strip().splitlines()[-1])["kind"] == "folder"
    # Prefect's events and logs were sent before the command returned, not left to its exit hook
    assert not [service for service in _QueueServiceBase._instances.values() if not service._stopped]
    checked = runner.invoke(app, ["data", "validate", f"folder:{folder}", "--set", "data.image_size=32"])
    assert checked.exit_code == 0, checked.output
    assert f"folder:{folder}: ok, train" in checked.stdout
    missing = runner.invoke(app, ["data", "validate", f"folder:{tmp_path / 'nope'}"])
    assert missing.exit_code == 2 and "does not exist or is not a folder" in missing.stderr


@pytest.mark.slow
def test_the_json_line_is_the_last_line_of_a_real_process(tmp_path):
    """As users run it: its own process and Prefect's temporary server, which logs while it stops."""
    folder = write_folder(tmp_path / "mine", 40, "csv")
    env = {**os.environ, "MULTITASK_HOME": str(tmp_path / "workspace")}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run([sys.executable, "-m", "cli", "data", "build", f"folder:{folder}", "--json"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == ""  # TensorFlow's start-up lines and TFDS's warnings stay off stderr
    assert "temporary server" in done.stdout  # the server this test is about did start
    # the build in our words, not TFDS's download lines ("Unknown size (download: Unknown size ...")
    assert "building the folder records from 40 images in" in done.stdout
    assert "Unknown size" not in done.stdout and "custom data configuration" not in done.stdout
    assert json.loads(done.stdout.strip().splitlines()[-1])["kind"] == "folder"
