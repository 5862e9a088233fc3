"""The Keras callbacks of a training: seeded epochs, the validation score, weight averaging,
the epoch log, the stopping rules, the epoch line and progress reports."""

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

SCORE = "val_score"  # validation label accuracy + box mean IoU: the one number both heads move
MAX_EPOCHS, PLATEAU, TIME_BUDGET, PRUNED = "max_epochs", "plateau", "time_budget", "pruned"  # why training stopped
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


class NoGain:
    """Stops after `patience` epochs with neither a better validation score nor more validation
    images right (see `RIGHT`)."""

    reason = PLATEAU

    def __init__(self, log: EpochLog, patience: int):
        self.log, self.patience = log, patience

    def stops(self, epochs: int) -> bool:
        best, gain = self.log.best_epoch(), self.log.last_gain()
        return best is not None and gain is not None and epochs - min(best, gain) >= self.patience


class Solved:
    """Stops once all but 1 in 200 of the validation images are right (`EpochLog.solved`)."""

    reason = PLATEAU

    def __init__(self, log: EpochLog, validation_images: int):
        self.log, self.validation_images = log, validation_images

    def stops(self, epochs: int) -> bool:
        return self.log.best_epoch() is not None and self.log.solved(self.validation_images)


class TimeLimit:
    """Stops before another epoch as long as the last would take training past `max_minutes`."""

    reason = TIME_BUDGET

    def __init__(self, log: EpochLog, max_minutes: float):
        self.log, self.max_minutes = log, max_minutes

    def stops(self, epochs: int) -> bool:
        last = self.log.epochs[str(epochs)]["epoch_seconds"]
        return self.log.seconds() + last > self.max_minutes * 60


class Pruned:
    """Stops a tuning trial that its search gives up on: `prune(epochs, score)` is asked after
    every epoch with the epoch's validation score (it reports the score and answers whether to stop)."""

    reason = PRUNED

    def __init__(self, log: EpochLog, prune: Callable[[int, float], bool]):
        self.log, self.prune = log, prune

    def stops(self, epochs: int) -> bool:
        score = self.log.epochs[str(epochs)].get(SCORE)
        return score is not None and self.prune(epochs, score)


class Stopping(keras.callbacks.Callback):
    """Ends training when the first of its rules says so; `reason` says which kind of rule
    (`max_epochs` while none has). The rules read the epoch log, which survives a resume, so a
    resumed run counts the epochs and minutes of the attempt that died."""

    def __init__(self, rules: list[NoGain | Solved | TimeLimit | Pruned]):
        super().__init__()
        self.rules, self.reason = rules, MAX_EPOCHS

    @classmethod
    def for_training(cls, log: EpochLog, patience: int | None, max_minutes: float | None,
                     validation_images: int, prune: Callable[[int, float], bool] | None = None) -> Stopping:
        """`train.early_stopping_patience` brings the plateau rules, `train.max_minutes` the time
        limit, a tuning trial's `prune` the pruning rule (asked first: it also reports the score)."""
        rules: list[NoGain | Solved | TimeLimit | Pruned] = [Pruned(log, prune)] if prune else []
        rules += [NoGain(log, patience), Solved(log, validation_images)] if patience else []
        return cls(rules + ([TimeLimit(log, max_minutes)] if max_minutes is not None else []))

    def on_epoch_end(self, epoch, logs=None):
        rule = next((rule for rule in self.rules if rule.stops(epoch + 1)), None)
        self.reason = rule.reason if rule else MAX_EPOCHS
        self.model.stop_training = rule is not None


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
