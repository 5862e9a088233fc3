import shutil
from pathlib import Path

from multitask import fingerprint
from multitask.config import TrainConfig
from multitask.fingerprint import hash_tree, library_fingerprint
from multitask.records import SnapshotRef
from multitask.step_keys import step_key


def test_tree_hash_sees_an_in_place_edit(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bin").write_bytes(b"one")
    before = hash_tree(tmp_path)
    (tmp_path / "a" / "x.bin").write_bytes(b"two")
    assert hash_tree(tmp_path) != before


def test_library_fingerprint_changes_with_any_source_edit(tmp_path: Path, monkeypatch):
    copy = tmp_path / "multitask"
    shutil.copytree(fingerprint.LIBRARY_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(fingerprint, "LIBRARY_DIR", copy)
    before = library_fingerprint()
    helper = copy / "metrics.py"
    helper.write_text(helper.read_text() + "\n# an edit deep in a helper\n")
    assert library_fingerprint() != before


def _snapshot(path: str, content: str) -> SnapshotRef:
    return SnapshotRef(path=path, class_names=["a", "b"], splits={"train": 1}, image_size=32, fingerprint=content)


def test_step_key_depends_on_content_not_paths():
    base = step_key("train_model", {"train_config": TrainConfig(), "snapshot": _snapshot("/one/place", "abc")})
    moved = step_key("train_model", {"train_config": TrainConfig(), "snapshot": _snapshot("/another/place", "abc")})
    edited = step_key("train_model", {"train_config": TrainConfig(), "snapshot": _snapshot("/one/place", "abd")})
    assert base == moved  # the same content elsewhere is the same input
    assert base != edited  # the same path with other content is not
    other_rate = TrainConfig(learning_rate=0.01)
    assert base != step_key("train_model", {"train_config": other_rate, "snapshot": _snapshot("/one/place", "abc")})
    assert base != step_key("evaluate_model", {"train_config": TrainConfig(),
                                               "snapshot": _snapshot("/one/place", "abc")})
