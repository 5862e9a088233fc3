"""Box losses: the seed's binary cross-entropy, Huber, 1 - GIoU, and Huber + (1 - GIoU)."""

from __future__ import annotations

import keras
from keras import ops

from multitask.metrics import intersection_and_union

_EPS = 1e-7


def giou(y_true, y_pred):
    """Generalised IoU: IoU minus the share of the enclosing box not covered by the union.

    Unlike IoU it still has a gradient when the boxes do not overlap.
    """
    inter, union = intersection_and_union(y_true, y_pred)
    enclosing_h = ops.maximum(y_true[..., 2], y_pred[..., 2]) - ops.minimum(y_true[..., 0], y_pred[..., 0])
    enclosing_w = ops.maximum(y_true[..., 3], y_pred[..., 3]) - ops.minimum(y_true[..., 1], y_pred[..., 1])
    enclosing = enclosing_h * enclosing_w
    return inter / (union + _EPS) - (enclosing - union) / (enclosing + _EPS)


@keras.saving.register_keras_serializable(package="multitask")
class BoxLoss(keras.losses.Loss):
    """`huber`, `giou` (1 - GIoU) or `huber+giou` on [ymin, xmin, ymax, xmax] boxes."""

    def __init__(self, kind: str = "huber", huber_delta: float = 0.02, name: str = "box_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if kind not in ("huber", "giou", "huber+giou"):
            raise ValueError(f"unknown box loss {kind!r}")
        self.kind = kind
        self.huber_delta = huber_delta

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        loss = 0.0
        if "huber" in self.kind:
            error = ops.abs(y_true - y_pred)
            quadratic = ops.minimum(error, self.huber_delta)
            loss = loss + ops.mean(0.5 * quadratic**2 + self.huber_delta * (error - quadratic), axis=-1)
        if "giou" in self.kind:
            loss = loss + 1.0 - giou(y_true, y_pred)
        return loss

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "huber_delta": self.huber_delta}


def box_loss(kind: str, huber_delta: float) -> keras.losses.Loss:
    if kind == "bce":
        return keras.losses.BinaryCrossentropy(name="box_loss")
    return BoxLoss(kind=kind, huber_delta=huber_delta)
