"""Watching a folder dataset: cheap when nothing moved, a change only when the content changed."""

from __future__ import annotations

import os

import pytest

from multitask.errors import DataError
from multitask.watch import look


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
