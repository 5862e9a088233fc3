"""Helpers the benchmarks share: a snapshot built once per work folder, one training of a config."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from multitask.config import DataConfig, RunConfig
from multitask.datasets import catalog
from multitask.model import save_initial
from multitask.pipeline import build_snapshot
from multitask.records import SnapshotRef, TrainedModelRef
from multitask.train import train


def snapshot_of(workdir: Path, name: str, data: DataConfig) -> SnapshotRef:
    """`data` as a snapshot named `name`; built once per workdir."""
    os.environ["MULTITASK_HOME"] = str(workdir / "ws")
    record = workdir / f"{name}.json"
    if record.exists():
        return SnapshotRef.model_validate_json(record.read_text())
    snapshot = build_snapshot(catalog.prepare(data), data, workdir / name)
    record.write_text(snapshot.model_dump_json())
    return snapshot


def train_once(snapshot: SnapshotRef, cfg: RunConfig, workdir: Path) -> TrainedModelRef:
    """Build `cfg`'s model for `snapshot` and train it in a fresh folder of `workdir`."""
    ref = save_initial(cfg.model, len(snapshot.class_names), snapshot.image_size,
                       Path(tempfile.mkdtemp(dir=workdir)) / "initial.keras")
    return train(ref, snapshot, cfg.train, Path(tempfile.mkdtemp(dir=workdir)))
