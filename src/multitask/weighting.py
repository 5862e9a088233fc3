"""Learned task weighting for the two heads: uncertainty weighting and Dynamic Weight Average.

`fixed` weighting needs nothing here: it is Keras' own `loss_weights`. The other two need the
per-head losses before they are summed, which only `Model.compute_loss` sees, and their state
(log-variances, DWA history) must be saved with the model and restored on a resume. Both
reasons make `WeightedMultiTask` a registered functional `keras.Model` subclass that owns the
head losses and their state as model variables.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import ops

from multitask.config import TrainConfig
from multitask.losses import EdgeLoss, WhereLoss, box_loss
from multitask.records import HEAD_METRICS

HEADS = tuple(HEAD_METRICS)
WEIGHTINGS = ("fixed", "uncertainty", "dwa")
WHERE = "where"  # a training-only output: a five-map box head's score maps (see `WhereLoss`)


@keras.saving.register_keras_serializable(package="multitask")
class WeightedMultiTask(keras.Model):
    """A two-head model whose loss weights change while it trains.

    `uncertainty` (Kendall, Gal and Cipolla 2018): trainable s_i = log sigma_i^2 and
    loss = sum_i 0.5 exp(-s_i) L_i + 0.5 s_i. Each s_i starts at -log(2 w_i), so training starts
    with the configured fixed weights w_i (which put Huber box losses of ~1e-3 on the scale
    of a cross-entropy) instead of taking thousands of steps to get there.

    `dwa` (Liu, Johns and Davison 2019): loss = sum_i lambda_i w_i L_i with
    lambda_i = K softmax_i(L_i(t-1) / L_i(t-2) / T) over the heads' mean training losses of
    the two previous epochs (lambda_i = 1 for the first two), so lambdas sum to K = 2;
    a head whose loss falls slowly gets more weight. `end_epoch` moves the history on.

    `fixed`: the weights w_i as they are, for a model with a `where` output (a box head's score
    maps), whose losses (`WhereLoss` and `EdgeLoss` on the true box, times `where_loss_weight`
    and `edge_loss_weight`) are added to any weighting.
    """

    def __init__(self, *args, weighting: str = "uncertainty", base_weights=(1.0, 1.0),
                 box_loss_kind: str = "huber", huber_delta: float = 0.02,
                 dwa_temperature: float = 2.0, where_loss_weight: float = 0.0, edge_loss_weight: float = 0.0,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if weighting not in WEIGHTINGS:
            raise ValueError(f"WeightedMultiTask weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.weighting = weighting
        self.base_weights = tuple(float(w) for w in base_weights)
        self.box_loss_kind = box_loss_kind
        self.huber_delta = huber_delta
        self.dwa_temperature = dwa_temperature
        self.where_loss_weight = where_loss_weight
        self.edge_loss_weight = edge_loss_weight
        self.where_loss = WhereLoss()
        self.edge_loss = EdgeLoss()
        self.where_loss_tracker = keras.metrics.Mean(name="where_loss") if WHERE in self.output_names else None
        self.edge_loss_tracker = keras.metrics.Mean(name="edge_loss") if self.where_loss_tracker and edge_loss_weight \
            else None
        self.head_losses = {
            "label": keras.losses.SparseCategoricalCrossentropy(name="label_loss"),
            "box": box_loss(box_loss_kind, huber_delta),
        }
        self.label_loss_tracker = keras.metrics.Mean(name="label_loss")
        self.box_loss_tracker = keras.metrics.Mean(name="box_loss")
        initial = [-math.log(2.0 * max(w, 1e-12)) for w in self.base_weights]
        self.log_variances = self.add_weight(
            shape=(2,), initializer=keras.initializers.Constant(initial), name="log_variances",
            trainable=weighting == "uncertainty",
        )
        self.dwa_lambdas = self.add_weight(shape=(2,), initializer="ones", name="dwa_lambdas", trainable=False)
        # Mean training loss per head of the epochs t-1 (row 0) and t-2 (row 1); 0 = not yet seen.
        self.dwa_history = self.add_weight(shape=(2, 2), initializer="zeros", name="dwa_history", trainable=False)

    def task_weights(self):
        """The weight each head's loss gets now, as a (label, box) tensor."""
        if self.weighting == "uncertainty":
            return 0.5 * ops.exp(-self.log_variances)
        if self.weighting == "fixed":
            return ops.convert_to_tensor(self.base_weights)
        return self.dwa_lambdas * ops.convert_to_tensor(self.base_weights)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # Inside a replica, Keras divides each loss by the replica count (their gradients are
        # summed): the trackers undo that, and the regulariser gets the same division.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        values = [self.head_losses[head](y[head], y_pred[head], sample_weight) for head in HEADS]
        self.label_loss_tracker.update_state(values[0] * replicas)
        self.box_loss_tracker.update_state(values[1] * replicas)
        total = ops.sum(self.task_weights() * ops.stack(values))
        if self.weighting == "uncertainty":
            total = total + 0.5 * ops.sum(self.log_variances) / replicas
        if WHERE not in y_pred or self.where_loss_tracker is None:
            return total
        for loss, tracker, weight in ((self.where_loss, self.where_loss_tracker, self.where_loss_weight),
                                      (self.edge_loss, self.edge_loss_tracker, self.edge_loss_weight)):
            if tracker is not None:
                value = loss(y["box"], y_pred[WHERE], sample_weight)
                tracker.update_state(value * replicas)
                total = total + weight * value
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """The heads' metrics; the `where` output has none (and no target of its own)."""
        served = {name: value for name, value in y_pred.items() if name != WHERE}
        return super().compute_metrics(x, y, served, sample_weight)

    def end_epoch(self, head_losses: dict[str, float]) -> None:
        """Record the epoch's mean training losses; for `dwa`, set the next epoch's lambdas."""
        previous = ops.convert_to_numpy(self.dwa_history)
        latest = [float(head_losses[head]) for head in HEADS]
        self.dwa_history.assign([latest, list(previous[0])])
        if self.weighting != "dwa" or not previous[0].all():
            return
        ratios = ops.convert_to_tensor(latest) / ops.maximum(ops.convert_to_tensor(previous[0]), 1e-12)
        self.dwa_lambdas.assign(len(HEADS) * ops.softmax(ratios / self.dwa_temperature))

    def get_config(self):
        return {**super().get_config(), "weighting": self.weighting, "base_weights": list(self.base_weights),
                "box_loss_kind": self.box_loss_kind, "huber_delta": self.huber_delta,
                "dwa_temperature": self.dwa_temperature, "where_loss_weight": self.where_loss_weight,
                "edge_loss_weight": self.edge_loss_weight}


class TaskWeightLog(keras.callbacks.Callback):
    """Adds `label_weight` and `box_weight` (the weights the epoch trained with) to each epoch's
    logs, then lets the model move its weighting on. Must come first among the callbacks so the
    others (the epoch log, TensorBoard) see the weights."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        weights = ops.convert_to_numpy(self.model.task_weights())
        logs.update({f"{head}_weight": float(w) for head, w in zip(HEADS, weights)})
        self.model.end_epoch({head: logs[f"{head}_loss"] for head in HEADS})


def with_weighting(model: keras.Model, cfg: TrainConfig, where=None) -> keras.Model:
    """The same layers (and weights) as `model`, in a `WeightedMultiTask` for `cfg.weighting`;
    with `where` (a box head's score maps in `model`), also a `where` output to train them on."""
    outputs = dict(zip(model.output_names, model.outputs))
    if where is not None:
        outputs[WHERE] = keras.layers.Identity(name=WHERE)(where)  # Keras names outputs by their layers
    return WeightedMultiTask(
        inputs=model.inputs, outputs=outputs, name=model.name, weighting=cfg.weighting,
        base_weights=(cfg.label_loss_weight, cfg.box_loss_weight), box_loss_kind=cfg.box_loss,
        huber_delta=cfg.huber_delta, dwa_temperature=cfg.dwa_temperature, where_loss_weight=cfg.where_loss_weight,
        edge_loss_weight=cfg.edge_loss_weight,
    )


def without_where(model: keras.Model) -> keras.Model:
    """`model`'s layers with the outputs it serves: `label` and `box`, not the training-only `where`."""
    outputs = {name: tensor for name, tensor in zip(model.output_names, model.outputs) if name != WHERE}
    return keras.Model(inputs=model.inputs, outputs=outputs, name=model.name)
