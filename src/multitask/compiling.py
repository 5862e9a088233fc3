"""Compiling a model to train: the optimizer and its schedule, the losses and their weighting,
the metrics, and the same model without its training-only `where` output."""

from __future__ import annotations

import keras
import tensorflow as tf

from multitask.config import TrainConfig
from multitask.heads import SoftArgmaxBox
from multitask.losses import box_loss
from multitask.metrics import BoxIoUAbove, MeanBoxIoU
from multitask.optimizer import FusedAdam
from multitask.weighting import WHERE, WeightedMultiTask, with_weighting, without_where


def learning_rate(cfg: TrainConfig, steps_per_epoch: int):
    if cfg.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps=cfg.epochs * steps_per_epoch)
    return cfg.learning_rate


def optimizer(cfg: TrainConfig, steps_per_epoch: int) -> FusedAdam:
    """Adam, with `cfg.weight_decay` on every weight but the learned task weights (`uncertainty`):
    decay would pull their log-variances to 0, i.e. towards equal weights; with `cfg.ema_momentum`,
    keeping the weights' moving average (`train.AveragedWeights` swaps it in to validate)."""
    adam = FusedAdam(learning_rate=learning_rate(cfg, steps_per_epoch), weight_decay=cfg.weight_decay or None,
                     use_ema=cfg.ema_momentum > 0, ema_momentum=cfg.ema_momentum)
    if cfg.weight_decay:
        adam.exclude_from_weight_decay(var_names=["log_variances"])
    return adam


def compile_model(model: keras.Model, cfg: TrainConfig, steps_per_epoch: int) -> keras.Model:
    """The model ready to train with `cfg`'s losses, weighting and metrics.

    Fixed weighting compiles the model itself with Keras' loss weights (sparse categorical
    cross-entropy is the seed's categorical one on integer labels). Learned weightings, and a
    model trained with `cfg.where_loss_weight` or `cfg.edge_loss_weight` on its box head's score
    maps (`where_map`), return the same layers in a `WeightedMultiTask`, which computes and
    weights the losses itself; the latter with a `where` output, which `for_inference` takes off.
    """
    losses, loss_weights = None, None
    where = where_map(model) if cfg.where_loss_weight or cfg.edge_loss_weight else None
    if cfg.weighting == "fixed" and where is None:
        losses = {"label": keras.losses.SparseCategoricalCrossentropy(name="label_loss"),
                  "box": box_loss(cfg.box_loss, cfg.huber_delta)}
        loss_weights = {"label": cfg.label_loss_weight, "box": cfg.box_loss_weight}
    else:
        model = with_weighting(model, cfg, where)
    model.compile(
        optimizer=optimizer(cfg, steps_per_epoch),
        loss=losses,
        loss_weights=loss_weights,
        # Metric objects, not names: Keras builds a metric named by a string inside the first traced
        # train step, and a variable created there makes TensorFlow trace the whole step twice.
        metrics={"label": [keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                           keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5")],
                 "box": [MeanBoxIoU(), BoxIoUAbove(0.5), BoxIoUAbove(0.75, name="iou75")]},
        steps_per_execution=_steps_per_execution(cfg),
    )
    build_loss_trackers(model)
    # Without a distribution strategy Keras creates the optimizer's slot variables inside the first
    # traced train step, at about 28 ms each (8 s for MobileNetV3-Small's 308): here, 0.5 s in all.
    model.optimizer.build(model.trainable_variables)
    return model


def build_loss_trackers(model: keras.Model) -> None:
    """Keras creates its per-head loss trackers the first time it computes the loss, inside the
    first traced train or test step, where a new variable makes TensorFlow trace the whole step
    twice. One loss computed here, on zeros, creates them before that. (A `WeightedMultiTask`
    has no Keras losses: it creates its trackers itself; a model without our two heads is left
    to Keras.)"""
    if model.loss is None or sorted(getattr(model, "output_names", ())) != ["box", "label"]:
        return
    y_pred = {name: keras.ops.zeros((1, *output.shape[1:])) for name, output in zip(model.output_names, model.outputs)}
    model.compute_loss(y={"label": keras.ops.zeros((1,), "int32"), "box": keras.ops.zeros((1, 4))}, y_pred=y_pred)
    model.reset_metrics()


def where_map(model: keras.Model):
    """The score maps of a box head with a where map (the fifth, see `_box_head`), or None."""
    head = next((layer for layer in model.layers if isinstance(layer, SoftArgmaxBox)), None)
    return head.input if head is not None and head.input.shape[-1] == 5 else None


def for_inference(model: keras.Model, cfg: TrainConfig) -> keras.Model:
    """A model trained with a `where` output, without it: compiled as `cfg` compiles a model
    that has none, with the weighting's state (DWA's lambdas, uncertainty's variances) kept."""
    if WHERE not in model.output_names:
        return model
    unsupervised = cfg.model_copy(update={"where_loss_weight": 0.0, "edge_loss_weight": 0.0})
    served = compile_model(without_where(model), unsupervised, steps_per_epoch=1)
    if isinstance(served, WeightedMultiTask) and isinstance(model, WeightedMultiTask):
        for name in ("log_variances", "dwa_lambdas", "dwa_history"):
            getattr(served, name).assign(getattr(model, name))
    return served


def _steps_per_execution(cfg: TrainConfig) -> int:
    """One step per call with several replicas: Keras 3.15's multi-step loop under MirroredStrategy
    fails ("You must feed a value for placeholder tensor ...") with two replicas (checked on two
    logical CPU devices; tests/test_train.py)."""
    return 1 if tf.distribute.get_strategy().num_replicas_in_sync > 1 else cfg.steps_per_execution
