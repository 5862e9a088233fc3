"""train(): fit a saved model on a snapshot, resumable, and save the best model and history."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import keras
import tensorflow as tf

from multitask import atomic
from multitask.config import TrainConfig
from multitask.model import compile_model, load
from multitask.pipeline import make_dataset
from multitask.records import ModelRef, SnapshotRef, TrainedModelRef, hash_files
from multitask.weighting import TaskWeightLog


class EpochLog(keras.callbacks.Callback):
    """Keeps every epoch's logs and train-only seconds in a JSON file, rewritten atomically.

    Survives a resume: epochs are keyed by number, so an epoch run twice is logged once.
    """

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.epochs: dict[str, dict[str, float]] = json.loads(path.read_text()) if path.exists() else {}

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()
        self._train_seconds = None

    def on_test_begin(self, logs=None):
        if getattr(self, "_train_seconds", 0) is None:
            self._train_seconds = time.perf_counter() - self._started

    def on_epoch_end(self, epoch, logs=None):
        seconds = self._train_seconds or (time.perf_counter() - self._started)
        self.epochs[str(epoch + 1)] = {**{k: float(v) for k, v in (logs or {}).items()},
                                       "train_seconds": seconds}
        atomic.write_json(self.path, self.epochs)

    def best_val_loss(self) -> float | None:
        losses = [e["val_loss"] for e in self.epochs.values() if "val_loss" in e]
        return min(losses) if losses else None


def strategy(kind: str) -> tf.distribute.Strategy:
    """`none`: the default single device; `mirrored`: all local GPUs; `multi_worker`: the
    workers named in the `TF_CONFIG` environment variable (one process per worker)."""
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _callbacks(cfg: TrainConfig, run_dir: Path, log: EpochLog) -> list[keras.callbacks.Callback]:
    best = log.best_val_loss()
    # First, so that the epoch log and TensorBoard see the learned task weights.
    callbacks = [TaskWeightLog()] if cfg.weighting != "fixed" else []
    callbacks += [
        log,
        keras.callbacks.TerminateOnNaN(raise_error=True),
        keras.callbacks.ModelCheckpoint(
            run_dir / "best.keras", monitor="val_loss", save_best_only=True,
            # after a resume, only an epoch better than the ones already run may replace it
            initial_value_threshold=best if best is not None else None,
        ),
        keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")),
    ]
    if cfg.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.early_stopping_patience))
    # Last, so an epoch counts as done only after the other callbacks have seen it.
    callbacks.append(keras.callbacks.BackupAndRestore(str(run_dir / "backup")))
    return callbacks


def train(model_ref: ModelRef, snapshot: SnapshotRef, cfg: TrainConfig, run_dir: Path) -> TrainedModelRef:
    """Fit for `cfg.epochs`, resuming from `run_dir/backup` when a previous attempt died.

    Writes `model.keras` (the best epoch on validation loss) and `history.json` last, so a
    run folder without them is never taken as finished.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "epochs.json"
    if not (run_dir / "backup").exists():  # a fresh start: forget epochs of a finished run
        log_path.unlink(missing_ok=True)
        (run_dir / "best.keras").unlink(missing_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    with strategy(cfg.distribute).scope():
        steps_per_epoch = math.ceil(snapshot.splits["train"] / cfg.batch_size)
        model = compile_model(load(model_ref.path, compile=False), cfg, steps_per_epoch)
    train_ds = make_dataset(snapshot, "train", cfg.batch_size, shuffle_buffer=cfg.shuffle_buffer,
                            augment_flip=cfg.augment_flip, seed=cfg.seed)
    val_ds = make_dataset(snapshot, "validation", cfg.batch_size)
    log = EpochLog(log_path)
    model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, verbose=2, shuffle=False,
              callbacks=_callbacks(cfg, run_dir, log))

    epochs = {int(k): v for k, v in log.epochs.items()}
    best_epoch = min(epochs, key=lambda e: epochs[e]["val_loss"])
    model_path = atomic.write_bytes(run_dir / "model.keras", (run_dir / "best.keras").read_bytes())
    history_path = atomic.write_json(run_dir / "history.json", [{"epoch": e, **epochs[e]} for e in sorted(epochs)])
    train_seconds = sum(e["train_seconds"] for e in epochs.values())
    images = snapshot.splits["train"] * len(epochs)
    return TrainedModelRef(
        run_dir=str(run_dir), model_path=str(model_path), history_path=str(history_path),
        epochs=len(epochs), best_epoch=best_epoch, train_seconds=round(train_seconds, 3),
        images_per_second=round(images / max(train_seconds, 1e-9), 1),
        fingerprint=hash_files([model_path, history_path]),
    )
