"""P2 input headroom: the `default` preset's tf.data pipeline alone (its augmentation included), images/s,
against its training's in float32 (P1's `default_preset_img_s`), on `shapes` with 3000 training images."""

from __future__ import annotations

import time
from pathlib import Path

from training import shapes_snapshot

from multitask.augment import Augmentation
from multitask.config_loader import load_config
from multitask.pipeline import make_dataset
from multitask.records import SnapshotRef


def pipeline_images_per_second(snapshot: SnapshotRef, batch_size: int, seconds: float = 5.0) -> float:
    """The `default` preset's training pipeline (shuffle, decode, augment) on `snapshot`: batches drawn for
    `seconds`, after 20 to warm it up."""
    cfg = load_config("default").train
    batches = make_dataset(snapshot, "train", batch_size, shuffle_buffer=cfg.shuffle_buffer,
                           augmentation=Augmentation.from_config(cfg), seed=0).repeat()
    iterator = iter(batches)
    for _ in range(20):
        next(iterator)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        count += int(next(iterator)[0].shape[0])
    return count / (time.perf_counter() - start)


def p2(workdir: Path, train_img_s: float) -> dict:
    pipeline = pipeline_images_per_second(shapes_snapshot(workdir, 3000), load_config("default").train.batch_size)
    return {"ratio": round(pipeline / train_img_s, 2), "goal": ">= 5", "pipeline_img_s": round(pipeline, 1),
            "train_img_s": round(train_img_s, 1)}
