"""Helpers the benchmarks share: a snapshot built once per work folder, one training of a config, and
the training speed (images/s) of our library and of the plain script on the same snapshot."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from multitask.config import DataConfig, RunConfig
from multitask.config_loader import load_config
from multitask.datasets import catalog
from multitask.model import save_initial
from multitask.pipeline import build_snapshot, load_split
from multitask.records import SnapshotRef, TrainedModelRef
from multitask.train import read_history, train

from plain_seed import build_plain_model, fit_plain


def snapshot_of(workdir: Path, name: str, data: DataConfig) -> SnapshotRef:
    """`data` as a snapshot named `name`; built once per workdir."""
    os.environ["MULTITASK_HOME"] = str(workdir / "ws")
    record = workdir / f"{name}.json"
    if record.exists():
        return SnapshotRef.model_validate_json(record.read_text())
    snapshot = build_snapshot(catalog.prepare(data), data, workdir / name)
    record.write_text(snapshot.model_dump_json())
    return snapshot


def shapes_snapshot(workdir: Path, train_size: int) -> SnapshotRef:
    """`shapes` with `train_size` training images, as a snapshot; built once per workdir."""
    return snapshot_of(workdir, f"snapshot-{train_size}",
                       DataConfig(train_size=train_size, validation_size=100, test_size=100))


def train_once(snapshot: SnapshotRef, cfg: RunConfig, workdir: Path) -> TrainedModelRef:
    """Build `cfg`'s model for `snapshot` and train it in a fresh folder of `workdir`."""
    ref = save_initial(cfg.model, len(snapshot.class_names), snapshot.image_size,
                       Path(tempfile.mkdtemp(dir=workdir)) / "initial.keras")
    return train(ref, snapshot, cfg.train, Path(tempfile.mkdtemp(dir=workdir)))


class EpochTimer(keras.callbacks.Callback):
    """Seconds of each epoch of a `fit`."""

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def plain_images_per_second(snapshot: SnapshotRef, epochs: int) -> float:
    """The plain script (bench/plain_seed.py) on the training split as numpy arrays: images/s of the median
    epoch after the first (which traces)."""
    examples = list(load_split(snapshot, "train").as_numpy_iterator())
    x = np.stack([e["image"] for e in examples]).astype("float32") / 255.0
    labels = keras.utils.to_categorical([e["label"] for e in examples], 10)
    boxes = np.stack([e["box"] for e in examples])
    timer = EpochTimer()
    fit_plain(build_plain_model(), x, labels, boxes, epochs, callbacks=[timer])
    return len(x) / statistics.median(timer.seconds[1:])


def ours_images_per_second(snapshot: SnapshotRef, epochs: int, workdir: Path, preset: str = "seed",
                           precision: str = "float32", sets: tuple = ()) -> float:
    """The library's training of `preset` on the snapshot: images/s of the median epoch after the first."""
    cfg = load_config(preset, sets=[f"train.epochs={epochs}", f'model.precision="{precision}"', *sets])
    history = read_history(train_once(snapshot, cfg, workdir).history_path)
    seconds = [row["train_seconds"] for row in history]
    return snapshot.splits["train"] / statistics.median(seconds[1:])
