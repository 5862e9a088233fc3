"""train(): fit a saved model on a snapshot, resumable, and save the best model and history.

How long training runs adapts to the data: `train.epochs` is the most epochs, and training
stops earlier when, for `train.early_stopping_patience` epochs, the validation score (label
accuracy + box mean IoU, both heads) has not improved or no more validation images came right
(label, box at IoU >= 0.5 or at IoU >= 0.75), or once all but 1 in 200 validation images are
right, or when `train.max_minutes` would be exceeded by another epoch. The best epoch on the
score is the model kept.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from multitask import atomic
from multitask.augment import Augmentation
from multitask.backbones import BACKBONE_LAYER, BACKBONES
from multitask.compiling import compile_model, for_inference
from multitask.config import TrainConfig
from multitask.model import load
from multitask.pipeline import make_dataset
from multitask.records import ModelRef, SnapshotRef, TrainedModelRef, hash_files
from multitask.weighting import WHERE, TaskWeightLog

SCORE = "val_score"  # validation label accuracy + box mean IoU: the one number both heads move
MAX_EPOCHS, PLATEAU, TIME_BUDGET = "max_epochs", "plateau", "time_budget"  # why training stopped
# What a validation image can get right. Once these stop rising, the score still crept up on
# `shapes` (box mean IoU +0.011 in 40 epochs, every image right): not worth three times the time.
RIGHT = ("val_label_accuracy", "val_box_iou50", "val_box_iou75")
# Solved: at most 1 validation image in 200 wrong on each of `RIGHT`. On `shapes` the last
# 1-5 images of 300 came and went for ten epochs without ever all staying right (docs/quality.md).
SOLVED_SHARE = 1 / 200


def _seed_generators(layer: keras.Layer) -> list[keras.random.SeedGenerator]:
    """The random streams of `layer` and the layers inside it (dropout's masks), in a fixed order."""
    own = [value for value in vars(layer).values() if isinstance(value, keras.random.SeedGenerator)]
    return own + [gen for inner in getattr(layer, "layers", []) for gen in _seed_generators(inner)]


class EpochSeeds(keras.callbacks.Callback):
    """Draws every random number of an epoch from `train.seed` and the epoch number alone.

    Sets the epoch variable that `make_dataset` reads for the shuffle order and augmentations,
    and restarts each dropout layer's stream from (seed, epoch, layer). Keras seeds a loaded
    layer's dropout from Python's global `random`, which any thread of the process (Prefect's,
    Dask's) may have drawn from, and a resumed run would start it over: with this, a training
    gives the same model in any process, and resumed at epoch k it goes on as if never stopped.
    """

    def __init__(self, epoch: tf.Variable, seed: int):
        super().__init__()
        self.epoch, self.seed = epoch, seed

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch.assign(epoch)
        for number, generator in enumerate(_seed_generators(self.model)):
            stream = np.random.default_rng([self.seed, epoch, number]).integers(1, 2**31)
            generator.state.assign(np.array([stream, 0], dtype=generator.state.dtype))


class ValidationScore(keras.callbacks.Callback):
    """Adds `val_score` to each epoch's logs, for checkpointing, stopping and the schedule."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and "val_label_accuracy" in logs:
            logs[SCORE] = float(logs["val_label_accuracy"]) + float(logs["val_box_mean_iou"])


class AveragedWeights(keras.callbacks.SwapEMAWeights):
    """With `train.ema_momentum`: validation, the epoch's callbacks and so the best checkpoint
    see the weights' moving average; the training steps and the crash backup, the weights.

    Keras' callback with `swap_on_epoch=True` would leave the average in the model when the
    backup is written, and a resumed run would train on from the average. Here the average goes
    in for validation and stays in until `swap_back`, which comes just before the backup.
    """

    def on_test_end(self, logs=None):
        pass

    def swap_back(self) -> keras.callbacks.Callback:
        swap = super().on_test_end
        return keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: swap())


class EpochLog(keras.callbacks.Callback):
    """Keeps every epoch's logs, train-only and whole-epoch seconds in a JSON file, rewritten
    atomically. Survives a resume: epochs are keyed by number, so an epoch run twice is logged once.
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
        seconds = time.perf_counter() - self._started
        self.epochs[str(epoch + 1)] = {**{k: float(v) for k, v in (logs or {}).items()},
                                       "train_seconds": self._train_seconds or seconds, "epoch_seconds": seconds}
        atomic.write_json(self.path, self.epochs)

    def _first_best(self, value: Callable[[dict[str, float]], float]) -> int | None:
        """The first validated epoch with the highest `value` of its logs, or None before any."""
        values = {int(k): value(e) for k, e in self.epochs.items() if SCORE in e}
        return max(values, key=lambda k: (values[k], -k)) if values else None

    def best_epoch(self) -> int | None:
        return self._first_best(lambda e: e[SCORE])

    def last_gain(self) -> int | None:
        """The first epoch with the most validation images right (see `RIGHT`)."""
        return self._first_best(lambda e: round(sum(e.get(name, 0.0) for name in RIGHT), 6))

    def solved(self, images: int) -> bool:
        """Whether the last epoch had all but 1 in 200 (`SOLVED_SHARE`) of the `images` validation
        images right, on each of `RIGHT`: every one, with fewer than 200."""
        last = self.epochs[str(max(map(int, self.epochs)))] if self.epochs else {}
        allowed = math.floor(images * SOLVED_SHARE)
        return bool(last) and all(round((1.0 - last.get(name, 0.0)) * images) <= allowed for name in RIGHT)

    def best_score(self) -> float | None:
        best = self.best_epoch()
        return None if best is None else self.epochs[str(best)][SCORE]

    def seconds(self) -> float:
        return sum(e.get("epoch_seconds", e["train_seconds"]) for e in self.epochs.values())


class Budget(keras.callbacks.Callback):
    """Stops on a plateau (of the validation score or of the images right), once every validation
    image is right but at most 1 in 200 (`EpochLog.solved`), or before the time budget runs out.

    Reads the epoch log, which survives a resume, so a resumed run counts the epochs and
    minutes of the attempt that died. `reason` says why training stopped.
    """

    def __init__(self, log: EpochLog, patience: int | None, max_minutes: float | None, validation_images: int):
        super().__init__()
        self.log, self.patience, self.max_minutes = log, patience, max_minutes
        self.validation_images = validation_images
        self.reason = MAX_EPOCHS

    def on_epoch_end(self, epoch, logs=None):
        if self.patience and self._plateau(epoch + 1, self.patience):
            self.reason = PLATEAU
        elif self.max_minutes is not None:
            last = self.log.epochs[str(epoch + 1)]["epoch_seconds"]
            if self.log.seconds() + last > self.max_minutes * 60:
                self.reason = TIME_BUDGET
        self.model.stop_training = self.reason != MAX_EPOCHS

    def _plateau(self, epochs: int, patience: int) -> bool:
        best, gain = self.log.best_epoch(), self.log.last_gain()
        if best is None or gain is None:
            return False
        return epochs - min(best, gain) >= patience or self.log.solved(self.validation_images)


class EpochLine(keras.callbacks.Callback):
    """One short line per epoch instead of Keras' long one: it begins `Epoch N/M` as Keras' does
    (scripts read it) and shows time, loss, validation accuracy and mean IoU, and the learning
    rate. `history.json` keeps every number."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        shown = {"loss": "loss", "val_label_accuracy": "val_acc", "val_box_mean_iou": "val_iou"}
        parts = [f"Epoch {epoch + 1}/{self.epochs}", f"{time.perf_counter() - self._started:.1f}s",
                 *(f"{name} {float(logs[key]):.4f}" for key, name in shown.items() if key in logs),
                 f"lr {float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)):.2e}"]
        print("  ".join(parts), flush=True)


class Progress(keras.callbacks.Callback):
    """Calls `report(percent)` after each epoch: the share of the maximum epochs run, or of
    `max_minutes` spent when that budget is the nearer end."""

    def __init__(self, log: EpochLog, epochs: int, max_minutes: float | None, report: Callable[[float], None]):
        super().__init__()
        self.log, self.epochs, self.max_minutes, self.report = log, epochs, max_minutes, report

    def on_epoch_end(self, epoch, logs=None):
        done = (epoch + 1) / self.epochs
        if self.max_minutes:
            done = max(done, self.log.seconds() / (self.max_minutes * 60))
        self.report(round(100 * min(done, 1.0), 1))


def strategy(kind: str) -> tf.distribute.Strategy:
    """`none`: the default single device; `mirrored`: one replica per local GPU, or per logical
    CPU device on a machine without GPUs (one, unless the process configured more)."""
    if kind == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    return tf.distribute.get_strategy()


def _callbacks(cfg: TrainConfig, run_dir: Path, log: EpochLog, budget: Budget, backup: str = "backup",
               on_progress: Callable[[float], None] | None = None) -> list[keras.callbacks.Callback]:
    best = log.best_score()
    averaged = AveragedWeights() if cfg.ema_momentum else None
    # First, so that the epoch log and TensorBoard see the averaged weights, the learned task
    # weights and the score.
    callbacks = [averaged] if averaged else []
    callbacks += [TaskWeightLog()] if cfg.weighting != "fixed" else []
    callbacks += [
        ValidationScore(),
        log,
        EpochLine(cfg.epochs),
        keras.callbacks.TerminateOnNaN(raise_error=True),
        keras.callbacks.ModelCheckpoint(
            run_dir / "best.keras", monitor=SCORE, mode="max", save_best_only=True,
            # after a resume, only an epoch better than the ones already run may replace it
            initial_value_threshold=best,
        ),
        keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")),
    ]
    if cfg.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=SCORE, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience,
            min_lr=cfg.learning_rate * 1e-3, verbose=0))
    callbacks.append(budget)
    if on_progress is not None:
        callbacks.append(Progress(log, cfg.epochs, cfg.max_minutes, on_progress))
    if averaged:
        callbacks.append(averaged.swap_back())
    # Last, so an epoch counts as done only after the other callbacks have seen it.
    callbacks.append(keras.callbacks.BackupAndRestore(str(run_dir / backup)))
    return callbacks


def read_history(path: Path | str) -> list[dict[str, float]]:
    """The per-epoch rows of a `history.json` (also accepts the older plain list)."""
    history = json.loads(Path(path).read_text())
    return history["epochs"] if isinstance(history, dict) else history


FROZEN = "frozen.keras"  # the model after the frozen-backbone phase
_PROGRESS = ("backup", "backup-frozen", FROZEN)  # what an unfinished run leaves in its folder


def _backbone(model: keras.Model) -> keras.Layer | None:
    return next((layer for layer in model.layers if layer.name == BACKBONE_LAYER), None)


def train(model_ref: ModelRef, snapshot: SnapshotRef, cfg: TrainConfig, run_dir: Path,
          on_progress: Callable[[float], None] | None = None) -> TrainedModelRef:
    """Fit for at most `cfg.epochs`, resuming where a previous attempt in `run_dir` died.

    A model with a pretrained backbone trains in two phases: `cfg.freeze_epochs` epochs of the
    heads alone (backbone frozen), then all layers at `cfg.finetune_learning_rate_factor` times
    the learning rate. Writes `model.keras` (the best epoch on the validation score) and
    `history.json` (every epoch, how many ran, the best, and why training stopped) last, so
    a run folder without them is never taken as finished. `on_progress(percent)` is called
    after each epoch (`Progress`).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    if not any((run_dir / name).exists() for name in _PROGRESS):  # a fresh start: forget a finished run
        for name in ("epochs.json", "best.keras"):
            (run_dir / name).unlink(missing_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    train_ds = make_dataset(snapshot, "train", cfg.batch_size, shuffle_buffer=cfg.shuffle_buffer,
                            augmentation=Augmentation.from_config(cfg), seed=cfg.seed, epoch=epoch)
    val_ds = make_dataset(snapshot, "validation", cfg.batch_size)
    log = EpochLog(run_dir / "epochs.json")
    budget = Budget(log, cfg.early_stopping_patience, cfg.max_minutes, snapshot.splits["validation"])
    steps_per_epoch = math.ceil(snapshot.splits["train"] / cfg.batch_size)

    distribution = strategy(cfg.distribute)  # one for both phases: their model's variables live in it

    def opened(model_path: Path | str) -> keras.Model:
        with distribution.scope():
            return load(model_path, compile=False)

    def fit(model: keras.Model, phase: TrainConfig, first: int, last: int, backup: str,
            train_backbone: bool = True) -> keras.Model:
        with distribution.scope():
            if (net := _backbone(model)) is not None:
                net.trainable = train_backbone
            model = compile_model(model, phase, steps_per_epoch)
        model.fit(train_ds, validation_data=val_ds, initial_epoch=first, epochs=last, verbose=0, shuffle=False,
                  callbacks=[EpochSeeds(epoch, cfg.seed), *_callbacks(cfg, run_dir, log, budget, backup, on_progress)])
        return model

    freeze = min(cfg.freeze_epochs, cfg.epochs - 1) if model_ref.preset in BACKBONES else 0
    if not freeze:
        trained = fit(opened(model_ref.path), cfg, 0, cfg.epochs, "backup")
        where_cfg = cfg if WHERE in trained.output_names else None
        return _finish(run_dir, log, budget.reason, snapshot.splits["train"], where_cfg)
    frozen = None  # the first phase's model, in memory when this attempt trained it
    if not (run_dir / FROZEN).exists():
        heads_only = cfg.model_copy(update={"epochs": freeze})
        frozen = fit(opened(model_ref.path), heads_only, 0, freeze, "backup-frozen", train_backbone=False)
        atomic.write_with(run_dir / FROZEN, frozen.save)
    if budget.reason == MAX_EPOCHS:
        rate = cfg.learning_rate * cfg.finetune_learning_rate_factor
        fine_tune = cfg.model_copy(update={"learning_rate": rate, "epochs": cfg.epochs - freeze})
        fit(frozen if frozen is not None else opened(run_dir / FROZEN), fine_tune, freeze, cfg.epochs, "backup")
    return _finish(run_dir, log, budget.reason, snapshot.splits["train"])  # pretrained heads have no where map


def _finish(run_dir: Path, log: EpochLog, reason: str, train_examples: int,
            where_cfg: TrainConfig | None = None) -> TrainedModelRef:
    """Write `model.keras` (the best epoch's model; for one trained with a `where` output, with
    `where_cfg`, that model without it: `model.for_inference`) and `history.json`."""
    (run_dir / FROZEN).unlink(missing_ok=True)
    epochs = {int(k): v for k, v in log.epochs.items()}
    best_epoch = log.best_epoch() or max(epochs)
    best = run_dir / "best.keras"
    if where_cfg is None:
        model_path = atomic.write_bytes(run_dir / "model.keras", best.read_bytes())
    else:
        model_path = atomic.write_with(run_dir / "model.keras", for_inference(load(best), where_cfg).save)
    history_path = atomic.write_json(run_dir / "history.json", {
        "epochs_run": len(epochs), "best_epoch": best_epoch, "stop_reason": reason,
        "epochs": [{"epoch": e, **epochs[e]} for e in sorted(epochs)],
    })
    train_seconds = sum(e["train_seconds"] for e in epochs.values())
    return TrainedModelRef(
        run_dir=str(run_dir), model_path=str(model_path), history_path=str(history_path),
        epochs=len(epochs), best_epoch=best_epoch, stop_reason=reason, train_seconds=round(train_seconds, 3),
        images_per_second=round(train_examples * len(epochs) / max(train_seconds, 1e-9), 1),
        fingerprint=hash_files([model_path, history_path]),
    )
