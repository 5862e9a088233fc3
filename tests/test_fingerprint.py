import shutil
from pathlib import Path

from multitask import fingerprint
from multitask.config import DataConfig, TrainConfig
from multitask.fingerprint import hash_tree, library_fingerprint, step_key


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


def test_step_key_depends_on_inputs_not_paths():
    base = step_key("train_model", {"train_config": TrainConfig(), "data": DataConfig()})
    assert base == step_key("train_model", {"train_config": TrainConfig(), "data": DataConfig()})
    assert base != step_key("train_model", {"train_config": TrainConfig(learning_rate=0.01), "data": DataConfig()})
    assert base != step_key("evaluate_model", {"train_config": TrainConfig(), "data": DataConfig()})
