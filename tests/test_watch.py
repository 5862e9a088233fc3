"""Watching a folder dataset: cheap when nothing moved, a change only when the content changed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multitask import watch
from multitask.errors import DataError
from multitask.watch import look, remember

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").write_bytes(b"first image")
    (root / "annotations.csv").write_text("filename,label\nimages/a.png,cat\n")
    return root


def _look(spec, state):
    """A look that is remembered, as the watch flow does once the change is announced."""
    seen = look(spec, state)
    remember(seen, state)
    return seen


def test_a_change_is_seen_once_and_only_when_the_content_changed(folder, tmp_path):
    spec, state = f"folder:{folder}", tmp_path / "watch"
    first = _look(spec, state)
    assert (first.changed, first.old, first.hashed) == (False, None, True)  # the first look only records

    again = _look(spec, state)
    assert (again.changed, again.new, again.hashed) == (False, first.new, False)  # nothing moved: no file read

    image = folder / "images" / "a.png"
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))  # touched, same bytes
    touched = _look(spec, state)
    assert (touched.changed, touched.new, touched.hashed) == (False, first.new, True)

    image.write_bytes(b"other image")
    edited = _look(spec, state)
    assert edited.changed and edited.hashed
    assert (edited.old, edited.new) == (first.new, edited.new) and edited.new != first.new
    assert not _look(spec, state).changed  # seen once

    (folder / "images" / "b.png").write_bytes(b"a new image")
    assert _look(spec, state).changed


def test_a_change_is_seen_until_it_is_remembered(folder, tmp_path):
    """A crash (or an event that did not go out) between the look and `remember`: the next look
    sees the same change again."""
    spec, state = f"folder:{folder}", tmp_path / "watch"
    first = _look(spec, state)
    (folder / "images" / "a.png").write_bytes(b"other image")
    seen = look(spec, state)
    assert seen.changed and look(spec, state) == seen
    remember(seen, state)
    assert not look(spec, state).changed and look(spec, state).old == seen.new != first.new


@pytest.mark.parametrize("content", ["", "{", "[1, 2]", '{"listing": 3}'])
def test_an_unreadable_state_file_is_a_first_look(folder, tmp_path, caplog, content):
    spec, state = f"folder:{folder}", tmp_path / "watch"
    _look(spec, state)
    [saved] = state.iterdir()
    saved.write_text(content)
    seen = look(spec, state)
    assert (seen.changed, seen.old, seen.hashed) == (False, None, True)
    assert "unreadable" in caplog.text and "taking this one as the first" in caplog.text
    remember(seen, state)
    assert look(spec, state).new == seen.new


def test_a_file_vanishing_mid_scan_means_scanning_again(folder, tmp_path, monkeypatch):
    spec, state = f"folder:{folder}", tmp_path / "watch"
    real, vanished = watch.hash_tree, []

    def moving_folder(root):
        if not vanished:
            vanished.append(1)
            raise FileNotFoundError(2, "No such file or directory", str(root / "images" / "gone.png"))
        return real(root)

    monkeypatch.setattr(watch, "hash_tree", moving_folder)
    assert _look(spec, state).new == real(folder) and vanished == [1]

    def always_moving(root):
        raise FileNotFoundError(2, "No such file or directory", str(root / "images" / "gone.png"))

    monkeypatch.setattr(watch, "hash_stat", always_moving)
    monkeypatch.setattr(watch, "SCANS", 2)
    with pytest.raises(TimeoutError, match="files kept vanishing"):  # transient: the step is retried
        look(spec, state)


def test_datasets_that_never_change_and_a_missing_folder(tmp_path):
    assert look("shapes", tmp_path).new is None and not look("shapes", tmp_path).changed
    with pytest.raises(DataError, match="no such folder"):
        look(f"folder:{tmp_path / 'absent'}", tmp_path)
    with pytest.raises(DataError, match="unknown dataset spec"):
        look("nonsense", tmp_path)


def test_the_watch_flow_imports_neither_tensorflow_nor_mlflow():
    """It runs every 10 minutes: a look must not cost TensorFlow's import (seconds, hundreds of MB)."""
    code = "import sys, flows.watch; print(sorted({'tensorflow', 'mlflow', 'keras'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _events(spec: str, name: str = "multitask.dataset.changed") -> list[dict]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        answer = client.request("POST", "/events/filter", json={
            "filter": {"event": {"name": [name]}, "resource": {"id": [spec]}}})
    return answer.json()["events"]


def test_an_event_that_did_not_go_out_is_sent_by_the_next_run(prefect_server, workspace, folder, monkeypatch):
    from flows.watch import watch_flow
    from tasks import watch as watch_steps

    from helpers import no_retry_waits

    spec = f"folder:{folder}"
    assert not watch_flow(spec)["changed"]
    (folder / "images" / "a.png").write_bytes(b"other image")
    no_retry_waits(monkeypatch, watch_steps.announce_change)
    with monkeypatch.context() as patch:
        patch.setattr(watch_steps, "_send", lambda event: (_ for _ in ()).throw(ConnectionError("server gone")))
        with pytest.raises(ConnectionError):
            watch_flow(spec)
    seen = watch_flow(spec)
    assert seen["changed"] and seen["old"] != seen["new"]
    assert not watch_flow(spec)["changed"]  # remembered once announced
    events = _poll(lambda: _events(spec))
    assert [(e["payload"]["old"], e["payload"]["new"]) for e in events] == [(seen["old"], seen["new"])]


def test_with_the_drift_trigger_only_a_change_that_moved_the_data_is_announced(prefect_server, workspace, tmp_path):
    """A tiny model of a folder; the folder regenerated from the same recipe (changed, not drifted),
    then with images twice as wide (drifted: the event names the features that moved)."""
    import shutil

    from flows.train import train_flow
    from flows.watch import watch_flow

    from helpers import tiny_config, write_rectangles

    counts = {"train": {"red": 20, "green": 20}, "validation": {"red": 5, "green": 5}, "test": {"red": 5, "green": 5}}
    folder = tmp_path / "rectangles"
    spec = write_rectangles(folder, counts).split("=", 1)[1].strip('"')
    model = train_flow(config=tiny_config(f'data.dataset="{spec}"'))
    reference = f"{model['model']}/{model['version']}"
    assert not watch_flow(spec, trigger="drift", against=reference)["changed"]
    for seed, size in ((1, (48, 48)), (2, (96, 48))):
        shutil.rmtree(folder)
        write_rectangles(folder, counts, size=size, seed=seed)
        seen = watch_flow(spec, trigger="drift", against=reference)
        assert seen["changed"] and seen["drift"]["drift"] == (size != (48, 48)), seen
    events = _poll(lambda: _events(spec, "multitask.dataset.drifted"))
    assert len(events) == 1 and events[0]["payload"]["against"] == reference
    assert {line.split(":")[0] for line in events[0]["payload"]["drifted"]} >= {"width", "aspect"}
    assert _events(spec) == []  # the drift trigger announces no bare change...
    shutil.rmtree(folder)
    write_rectangles(folder, counts, seed=3)
    seen = watch_flow(spec, trigger="drift", against="no-such-model/1")
    assert seen["changed"] and seen["drift"] is None
    assert len(_poll(lambda: _events(spec))) == 1  # ...unless it cannot check: then the change

def _poll(read, timeout: float = 30):
    deadline, found = time.monotonic() + timeout, read()
    while not found and time.monotonic() < deadline:
        time.sleep(0.5)
        found = read()
    return found
