"""Watching a folder dataset: cheap when nothing moved, a change only when the content changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from multitask.errors import DataError
from multitask.watch import look

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").write_bytes(b"first image")
    (root / "annotations.csv").write_text("filename,label\nimages/a.png,cat\n")
    return root


def test_a_change_is_seen_once_and_only_when_the_content_changed(folder, tmp_path):
    spec, state = f"folder:{folder}", tmp_path / "watch"
    first = look(spec, state)
    assert (first.changed, first.old, first.hashed) == (False, None, True)  # the first look only records

    again = look(spec, state)
    assert (again.changed, again.new, again.hashed) == (False, first.new, False)  # nothing moved: no file read

    image = folder / "images" / "a.png"
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))  # touched, same bytes
    touched = look(spec, state)
    assert (touched.changed, touched.new, touched.hashed) == (False, first.new, True)

    image.write_bytes(b"other image")
    edited = look(spec, state)
    assert edited.changed and edited.hashed
    assert (edited.old, edited.new) == (first.new, edited.new) and edited.new != first.new
    assert not look(spec, state).changed  # seen once

    (folder / "images" / "b.png").write_bytes(b"a new image")
    assert look(spec, state).changed


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
