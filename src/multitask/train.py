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
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf

from multitask import atomic
from multitask.augment import Augmentation
from multitask.backbones import BACKBONE_LAYER, BACKBONES
from multitask.backup import Backup
from multitask.callbacks import (
    MAX_EPOCHS,
    SCORE,
    AveragedWeights,
    EpochLine,
    EpochLog,
    EpochSeeds,
    Progress,
    Stopping,
    ValidationScore,
)
from multitask.compiling import compile_model, for_inference
from multitask.config import TrainConfig
from multitask.model import load
from multitask.pipeline import make_dataset
from multitask.records import ModelRef, SnapshotRef, TrainedModelRef, hash_files
from multitask.weighting import WHERE, TaskWeightLog


def strategy(kind: str) -> tf.distribute.Strategy:
    """`none`: the default single device; `mirrored`: one replica per local GPU, or per logical
    CPU device on a machine without GPUs (one, unless the process configured more)."""
    if kind == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    return tf.distribute.get_strategy()


def _callbacks(cfg: TrainConfig, run_dir: Path, log: EpochLog, budget: Stopping, backup: str = "backup",
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
    callbacks.append(Backup(run_dir / backup))
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
          on_progress: Callable[[float], None] | None = None,
          prune: Callable[[int, float], bool] | None = None) -> TrainedModelRef:
    """Fit for at most `cfg.epochs`, resuming where a previous attempt in `run_dir` died.

    A model with a pretrained backbone trains in two phases: `cfg.freeze_epochs` epochs of the
    heads alone (backbone frozen), then all layers at `cfg.finetune_learning_rate_factor` times
    the learning rate. Writes `model.keras` (the best epoch on the validation score) and
    `history.json` (every epoch, how many ran, the best, and why training stopped) last, so
    a run folder without them is never taken as finished. `on_progress(percent)` is called
    after each epoch (`Progress`); a tuning trial's `prune(epochs, score)` too, and stops
    training when it answers yes (`Pruned`).
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
    budget = Stopping.for_training(log, cfg.early_stopping_patience, cfg.max_minutes, snapshot.splits["validation"],
                                   prune)
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
        "epochs_run": len(epochs), "best_epoch": best_epoch, "stop_reason": reason, "train_images": train_examples,
        "epochs": [{"epoch": e, **epochs[e]} for e in sorted(epochs)],
    })
    train_seconds = sum(e["train_seconds"] for e in epochs.values())
    return TrainedModelRef(
        run_dir=str(run_dir), model_path=str(model_path), history_path=str(history_path),
        epochs=len(epochs), best_epoch=best_epoch, stop_reason=reason, train_seconds=round(train_seconds, 3),
        images_per_second=round(train_examples * len(epochs) / max(train_seconds, 1e-9), 1),
        fingerprint=hash_files([model_path, history_path]),
    )
